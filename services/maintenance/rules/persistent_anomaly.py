"""Persistent anomaly: one anomaly event is noise, k of them within a window is a condition."""

from __future__ import annotations

from collections import deque

from maintenance.rules.base import AlertRule, Anomaly, Finding, Observation
from maintenance.words import duration, sensor_name

SENSOR_FAULT_MODELS = ("dropout", "stuck")  # anomaly detectors whose episodes are sensor faults
_SEEN_IDS = 256  # redelivered revisions (same event_id and ts) are ignored within this memory


class PersistentAnomaly(AlertRule):
    """Finds a condition when at least ``k`` anomaly events for one sensor fall within
    ``window_s`` seconds of event time. The first finding counts all ``k`` events, later
    ones count one each, so the alert's occurrence count is the number of anomaly events.
    An event is one revision of an anomaly episode, (event_id, ts): the anomaly service
    re-emits a lasting episode periodically under the same event_id, and a lasting episode
    is exactly the persistence this rule is for.
    Severity is critical when the score reaches ``critical_ratio`` times the threshold; the
    sensor-health detectors (``dropout``, ``stuck``: a sensor problem, not a machine one) give
    warnings only. An episode's closing revision (score at or below its threshold: the
    detector's alarm went off) is not an anomaly and is not counted.

    >>> rule = PersistentAnomaly(k=3, window_s=60)
    >>> ev = lambda i: Anomaly(f"e{i}", "vib", ts=i * 10_000_000, score=2.0, threshold=1.0)
    >>> [[f.count for f in rule.update(ev(i))] for i in range(5)]
    [[], [], [3], [1], [1]]
    >>> rule.update(ev(4))  # a redelivered event changes nothing
    []
    >>> rule = PersistentAnomaly(k=3, window_s=600)  # one episode re-emitted each minute
    >>> [len(rule.update(Anomaly("ep1", "vib", ts=i * 60_000_000, score=2.0, threshold=1.0)))
    ...  for i in range(4)]
    [0, 0, 1, 1]
    >>> rule.update(Anomaly("late", "vib", ts=10**9, score=2.0, threshold=1.0))  # window emptied
    []
    >>> rule.update(Anomaly("late", "vib", ts=10**9 + 1, score=0.0, threshold=1.0))  # it closed
    []
    >>> [f.title for f in rule.update(Anomaly("late", "vib", ts=10**9 + 2, score=2.0, threshold=1.0))]
    []
    """

    name = "persistent_anomaly"

    def __init__(self, k: int = 3, window_s: float = 600.0, critical_ratio: float = 2.0) -> None:
        self.k = k
        self.window_s = window_s
        self.critical_ratio = critical_ratio
        self._times: deque[int] = deque()
        self._seen: deque[tuple[str, int]] = deque(maxlen=_SEEN_IDS)
        self._firing = False

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Anomaly) or (obs.event_id, obs.ts) in self._seen:
            return []
        self._seen.append((obs.event_id, obs.ts))
        if obs.score <= obs.threshold:
            return []  # the episode's closing revision
        self._times.append(obs.ts)
        horizon = obs.ts - int(self.window_s * 1e6)
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        if len(self._times) < self.k:
            self._firing = False
            return []
        count = 1 if self._firing else len(self._times)
        self._firing = True
        ratio = obs.score / obs.threshold if obs.threshold > 0 else float("inf")
        sensor_fault = obs.model in SENSOR_FAULT_MODELS
        severity = "critical" if ratio >= self.critical_ratio and not sensor_fault else "warning"
        evidence = {"score": float(obs.score), "threshold": float(obs.threshold), "share": float(obs.share),
                    "events_in_window": float(len(self._times)), "window_s": float(self.window_s)}
        if obs.value is not None:
            evidence["value"] = obs.value
        lasting = (obs.ts - obs.window_start) / 1e6 if obs.window_start else 0.0
        evidence["episode_s"] = lasting
        name = sensor_name(obs.sensor)
        if obs.model == "dropout":
            title = f"{name}: no readings for {duration(lasting)} while the other sensors report"
        elif obs.model == "stuck":
            title = f"{name}: value frozen for {duration(lasting)}"
        else:
            title = f"{name} behaving unusually for this machine"
            if lasting >= 60:
                title += f" for {duration(lasting)}"
        action = "Check the sensor, its wiring and the gateway's input for it." if sensor_fault else None
        return [Finding(self.name, obs.sensor, severity, title, obs.ts, evidence, count=count,
                        action=action, detector=obs.model)]
