"""Sensor health: a gateway whose clock is wrong makes every time-based rule lie."""

from __future__ import annotations

import statistics
from collections import deque

from maintenance.rules.base import AlertRule, Finding, Observation, Reading
from maintenance.words import duration


class ClockSkew(AlertRule):
    """Finds a condition when the gateway's clock is more than ``max_skew_s`` seconds off the
    platform clock. ``max_skew_s=0`` turns the rule off. A clock belongs to the gateway, not to
    a sensor: the service keeps one instance per gateway (``scope``), and its finding's subject
    is the gateway.

    The measure is the batch's send time on the gateway clock (``sent_at``, reading_batch v2)
    against the platform clock at ingest: ``ingest_time - sent_at`` is the skew plus the
    transport delay, whatever the age of the readings, so a gateway sending buffered or
    historical data is not mistaken for a wrong clock. Per batch (readings of one batch share
    it), over the last ``batch_window`` batches: the condition holds when all of them are off
    to the same side by more than ``max_skew_s`` (so a batch stuck in a queue, which only
    looks later, cannot raise it alone); the reported skew is the one with the least delay
    (the minimum, as NTP filters its samples).

    Readings without ``sent_at`` (v1 producers) fall back to sample times: the median of
    ``ingest_time - ts`` over the last ``window`` readings, which also counts the age of the
    data (a backlog looks like a lagging clock).

    >>> rule = ClockSkew(max_skew_s=60, window=3, batch_window=2)
    >>> r = lambda skew_s: Reading("temp", ts=0, value=1.0, ingest_time=int(skew_s * 1e6))
    >>> [len(rule.update(r(s))) for s in (1, 500, 2)]
    [0, 0, 0]
    >>> [round(f.evidence["skew_s"]) for f in (rule.update(r(-300)) + rule.update(r(-301)))]
    [-300]
    >>> old = lambda sent_s, ts_h: Reading("temp", ts=ts_h * 3_600_000_000, value=1.0,
    ...                                   ingest_time=10**12, sent_at=10**12 - int(sent_s * 1e6))
    >>> [len(rule.update(old(0.2, h))) for h in range(3)]  # hours-old data, sent just now
    [0, 0, 0]
    >>> found = rule.update(old(-120, 0)) + rule.update(old(-121, 0))  # gateway clock 2 min ahead
    >>> [(f.title, f.evidence["skew_s"]) for f in found]
    [('Gateway clock 2 min ahead of the platform clock', -121.0)]
    """

    name = "clock_skew"
    scope = "gateway"

    def __init__(self, max_skew_s: float = 300.0, window: int = 20, batch_window: int = 5) -> None:
        self.max_skew_s = max_skew_s
        self.window = window
        self.batch_window = batch_window
        self._skews: deque[float] = deque(maxlen=window)
        self._batches: deque[float] = deque(maxlen=batch_window)
        self._last_batch: tuple[int, int] | None = None

    def __setstate__(self, state: dict) -> None:
        """Restores rules pickled before batch_window existed (the service's table survives upgrades)."""
        self.__dict__.update(state)
        if "_batches" not in state:
            self.batch_window = 5
            self._batches = deque(maxlen=self.batch_window)
            self._last_batch = None

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading) or not self.max_skew_s:
            return []
        if obs.sent_at is not None:
            return self._from_sent_at(obs, obs.sent_at)
        self._skews.append((obs.ingest_time - obs.ts) / 1e6)
        if len(self._skews) < self.window:
            return []
        skew = statistics.median(self._skews)
        if abs(skew) <= self.max_skew_s:
            return []
        return [self._finding(obs, skew, from_sent_at=False)]

    def _from_sent_at(self, obs: Reading, sent_at: int) -> list[Finding]:
        batch = (sent_at, obs.ingest_time)
        if batch == self._last_batch:
            return []  # another reading of a batch already counted
        self._last_batch = batch
        self._batches.append((obs.ingest_time - sent_at) / 1e6)
        if len(self._batches) < self.batch_window:
            return []
        lo, hi = min(self._batches), max(self._batches)
        if lo > self.max_skew_s or hi < -self.max_skew_s:
            return [self._finding(obs, lo, from_sent_at=True)]
        return []

    def _finding(self, obs: Reading, skew: float, from_sent_at: bool) -> Finding:
        how = "ahead of" if skew < 0 else "behind"
        who = f"Gateway {obs.gateway}" if obs.gateway else "Gateway"
        title = f"{who} clock {duration(abs(skew))} {how} the platform clock"
        if not from_sent_at:
            title += " (judged from sample times: the gateway does not send sent_at)"
        return Finding(self.name, obs.sensor, "warning", title, obs.ts,
                       {"skew_s": float(skew), "max_skew_s": float(self.max_skew_s),
                        "from_sent_at": float(from_sent_at)},
                       action="Fix the gateway's time synchronisation (NTP).", subject=obs.gateway)
