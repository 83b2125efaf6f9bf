"""Anomaly events: what the service writes to ``anomalies``.

An anomaly *episode* (the detector's alarm state from on to off) is reported as revisions
of one event: the first when the episode opens, an update every ``update_us`` of sample
time while it lasts, and a last one when it closes (its score is then at or below the
threshold). All revisions share ``event_id`` = machine, model, kind and episode start, so a
redelivered or replayed revision keeps its id; ``(event_id, ts)`` identifies a revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anomaly.machine import Verdict
from anomaly.sensorwatch import SensorAlarm

MachineId = tuple[str, str, str]
MIN_SHARE = 0.005  # sensors with a smaller share of the score are left out of the event


def event_id(mid: MachineId, model: str, kind: str, window_start: int, sensor: str | None = None) -> str:
    """Stable, readable id of an episode: ``tenant/site/machine:model:kind:start_us``; a
    univariate episode names its sensor too (``...:univariate:sensor:start_us``)."""
    where = f"{kind}:{sensor}" if sensor else kind
    return f"{mid[0]}/{mid[1]}/{mid[2]}:{model}:{where}:{window_start}"


def anomaly_event(
    mid: MachineId,
    verdict: Verdict | SensorAlarm,
    window_start: int,
    window_end: int,
    values: Mapping[str, float],
    kind: str = "multivariate",
    sensor: str | None = None,
) -> dict[str, Any]:
    """An ``anomaly_event`` record for ``verdict`` (a :class:`Verdict`, or a per-sensor
    :class:`~anomaly.sensorwatch.SensorAlarm` with ``kind='univariate'`` and its ``sensor``),
    contributions sorted, largest first."""
    contrib = sorted(verdict.contributions.items(), key=lambda kv: kv[1], reverse=True)
    keep = [(k, s) for i, (k, s) in enumerate(contrib) if i == 0 or s >= MIN_SHARE]
    return {
        "event_id": event_id(mid, verdict.model, kind, window_start, sensor),
        "tenant": mid[0], "site": mid[1], "machine": mid[2],
        "ts": verdict.ts_micros,
        "window_start": window_start,
        "window_end": window_end,
        "score": float(verdict.score),
        "threshold": float(verdict.threshold),
        "kind": kind,
        "model": verdict.model,
        "model_version": verdict.model_version,
        "contributions": [
            {"sensor": k, "share": float(s), "value": _value(values.get(k))} for k, s in keep
        ],
    }


def rebaseline_event(mid: MachineId, verdict: Verdict) -> dict[str, Any]:
    """The ``kind='rebaseline'`` event of a settled episode: the machine runs at a new operating
    point and the model learns it as normal. Its contributions are the sensors that moved, each
    with its share of the total shift and its new level as ``value``; ``score`` is the largest
    shift in the old normal standard deviations, ``threshold`` the machine's threshold then."""
    moved = [(k, abs(d), level) for k, d, level in verdict.rebaseline if abs(d) >= 1.0]
    moved = moved or [(k, abs(d), level) for k, d, level in verdict.rebaseline[:1]]
    total = sum(d for _, d, _ in moved) or 1.0
    return {
        "event_id": event_id(mid, verdict.model, "rebaseline", verdict.ts_micros),
        "tenant": mid[0], "site": mid[1], "machine": mid[2],
        "ts": verdict.ts_micros, "window_start": verdict.ts_micros, "window_end": verdict.ts_micros,
        "score": float(max((d for _, d, _ in moved), default=0.0)), "threshold": float(verdict.threshold),
        "kind": "rebaseline", "model": verdict.model, "model_version": verdict.model_version,
        "contributions": [{"sensor": k, "share": d / total, "value": float(level)} for k, d, level in moved],
    }


def _value(v: float | None) -> float | None:
    return None if v is None else float(v)


@dataclass
class Episode:
    """Where the current anomaly episode of a machine stands (pickled with its state)."""

    start: int | None = None
    last_emit: int = 0
    last_on: int = 0

    def step(self, v: Verdict | SensorAlarm, update_us: int) -> tuple[int, int] | None:
        """Feed one post-warm-up verdict; return ``(window_start, window_end)`` if it must
        be reported (open, periodic update or close), else None."""
        if v.is_anomaly:
            if v.state_changed or self.start is None:
                self.start = self.last_emit = self.last_on = v.ts_micros
                return self.start, v.ts_micros
            self.last_on = v.ts_micros
            if v.ts_micros - self.last_emit >= update_us:
                self.last_emit = v.ts_micros
                return self.start, v.ts_micros
            return None
        if v.state_changed and self.start is not None:
            start, end = self.start, self.last_on
            self.start = None
            return start, end
        return None
