"""Persistent anomaly: one anomaly event is noise, k of them within a window is a condition."""

from __future__ import annotations

from collections import deque

from maintenance.rules.base import AlertRule, Anomaly, Finding, Observation

_SEEN_IDS = 256  # redelivered revisions (same event_id and ts) are ignored within this memory


class PersistentAnomaly(AlertRule):
    """Finds a condition when at least ``k`` anomaly events for one sensor fall within
    ``window_s`` seconds of event time. The first finding counts all ``k`` events, later
    ones count one each, so the alert's occurrence count is the number of anomaly events.
    An event is one revision of an anomaly episode, (event_id, ts): the anomaly service
    re-emits a lasting episode periodically under the same event_id, and a lasting episode
    is exactly the persistence this rule is for.
    Severity is critical when the score reaches ``critical_ratio`` times the threshold.

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
        severity = "critical" if ratio >= self.critical_ratio else "warning"
        evidence = {"score": float(obs.score), "threshold": float(obs.threshold), "share": float(obs.share),
                    "events_in_window": float(len(self._times)), "window_s": float(self.window_s)}
        if obs.value is not None:
            evidence["value"] = obs.value
        title = (f"{obs.sensor}: {len(self._times)} anomalies within {self.window_s / 60:.0f} min "
                 f"(score {obs.score:.3g}, threshold {obs.threshold:.3g})")
        return [Finding(self.name, obs.sensor, severity, title, obs.ts, evidence, count=count)]
