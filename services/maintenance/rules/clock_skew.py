"""Sensor health: a gateway whose clock is wrong makes every time-based rule lie."""

from __future__ import annotations

import statistics
from collections import deque

from maintenance.rules.base import AlertRule, Finding, Observation, Reading


class ClockSkew(AlertRule):
    """Finds a condition when the median of (ingest time - sample time) over the last
    ``window`` readings is more than ``max_skew_s`` seconds either way: negative means the
    gateway clock runs ahead, positive that it lags (or the gateway sends a backlog).
    The median makes one late batch harmless. ``max_skew_s=0`` turns the rule off.

    >>> rule = ClockSkew(max_skew_s=60, window=3)
    >>> r = lambda skew_s: Reading("temp", ts=0, value=1.0, ingest_time=int(skew_s * 1e6))
    >>> [len(rule.update(r(s))) for s in (1, 500, 2)]
    [0, 0, 0]
    >>> [round(f.evidence["skew_s"]) for f in (rule.update(r(-300)) + rule.update(r(-301)))]
    [-300]
    """

    name = "clock_skew"

    def __init__(self, max_skew_s: float = 300.0, window: int = 20) -> None:
        self.max_skew_s = max_skew_s
        self.window = window
        self._skews: deque[float] = deque(maxlen=window)

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading) or not self.max_skew_s:
            return []
        self._skews.append((obs.ingest_time - obs.ts) / 1e6)
        if len(self._skews) < self._skews.maxlen:  # type: ignore[operator]
            return []
        skew = statistics.median(self._skews)
        if abs(skew) <= self.max_skew_s:
            return []
        how = "ahead of" if skew < 0 else "behind"
        title = f"{obs.sensor}: gateway clock {abs(skew):.0f} s {how} the platform clock"
        return [Finding(self.name, obs.sensor, "warning", title, obs.ts,
                        {"skew_s": float(skew), "max_skew_s": float(self.max_skew_s)},
                        action="Fix the gateway's time synchronisation (NTP).")]
