"""Adaptive threshold with warm-up and hysteresis.

Why: raw scores have no absolute meaning across machines and sensors, so the threshold is a
high quantile of the machine's own normal scores times a safety factor. Anomalies are
episodes, not single readings, and one noisy reading must not make an alert flap: the state
turns on after ``k_on`` high scores among the last ``n_on`` and off after ``m_off``
consecutive low ones.

Why not River's ``QuantileFilter``/``stats.RollingQuantile``: River's filters have no
hysteresis (one score decides), and its quantiles keep their state in Rust objects the safe
state codec cannot write (snapshots never pickle). This one is an exact rolling quantile over a
plain deque.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any


class AdaptiveThreshold:
    """Rolling-quantile threshold plus k-of-n / m-consecutive hysteresis.

    Parameters
    ----------
    q
        Quantile of the learned (normal) scores, e.g. 0.99.
    factor
        Multiplier on that quantile; > 1 leaves headroom for normal data not seen yet.
    window
        How many learned scores are kept (exact rolling quantile, bounded memory).
    min_samples
        Below this many learned scores the threshold is infinite (never alarms).
    k_on, n_on
        Turn on when at least ``k_on`` of the last ``n_on`` scores were above threshold.
    m_off
        Turn off after ``m_off`` consecutive scores at or below threshold.

    >>> th = AdaptiveThreshold(q=0.5, factor=2.0, min_samples=3, k_on=2, n_on=3, m_off=2)
    >>> for s in [1.0, 1.0, 1.0, 1.0]:
    ...     th.learn(s)
    >>> th.threshold
    2.0
    >>> [th.step(s) for s in [5.0, 0.0, 5.0, 0.0, 0.0]]
    [(False, False), (False, False), (True, True), (True, False), (False, True)]
    """

    def __init__(
        self,
        q: float = 0.99,
        factor: float = 2.5,
        window: int = 1000,
        min_samples: int = 20,
        k_on: int = 5,
        n_on: int = 5,
        m_off: int = 5,
    ) -> None:
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        if not 1 <= k_on <= n_on:
            raise ValueError("need 1 <= k_on <= n_on")
        self.q = q
        self.factor = factor
        self.window = window
        self.min_samples = min_samples
        self.k_on = k_on
        self.n_on = n_on
        self.m_off = m_off
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._cached: float | None = None
        self._recent: deque[bool] = deque(maxlen=n_on)
        self._n_high = 0
        self._low_run = 0
        self.on = False

    # The sorted copy of the window is rebuilt from it when a snapshot is read back: half
    # the floats of the threshold's snapshot, in every transaction of the anomaly service.
    __derived__ = ("_sorted",)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sorted = sorted(self._fifo)

    def learn(self, score: float) -> None:
        """Add a score believed normal to the rolling sample."""
        if not math.isfinite(score):
            return
        self._fifo.append(score)
        bisect.insort(self._sorted, score)
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._cached = None

    @property
    def threshold(self) -> float:
        """Current threshold: ``factor * quantile(q)`` of learned scores (inf if too few)."""
        if self._cached is None:
            s = self._sorted
            if len(s) < max(self.min_samples, 1):
                self._cached = math.inf
            else:
                pos = self.q * (len(s) - 1)
                lo = int(pos)
                hi = min(lo + 1, len(s) - 1)
                self._cached = self.factor * (s[lo] + (s[hi] - s[lo]) * (pos - lo))
        return self._cached

    def step(self, score: float) -> tuple[bool, bool]:
        """Feed one score; return ``(is_on, changed)`` after hysteresis."""
        high = score > self.threshold
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._n_high -= 1
        recent.append(high)
        if high:
            self._n_high += 1
            self._low_run = 0
        else:
            self._low_run += 1
        if not self.on and self._n_high >= self.k_on:
            self.on = True
            return True, True
        if self.on and self._low_run >= self.m_off:
            self.on = False
            return False, True
        return self.on, False

    def reset_state(self) -> None:
        """Forget the hysteresis state (not the learned scores)."""
        self._recent.clear()
        self._n_high = 0
        self._low_run = 0
        self.on = False

    def clone(self) -> AdaptiveThreshold:
        """Fresh threshold with the same hyperparameters."""
        return AdaptiveThreshold(
            self.q, self.factor, self.window, self.min_samples, self.k_on, self.n_on, self.m_off
        )
