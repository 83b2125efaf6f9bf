"""Sensor health: a stuck sensor (the same raw value for too long) and a dropout (a sensor
missing from the machine's rows for too long).

Why a separate kind of check and not a :class:`~anomaly.detectors.Detector`: these judge
the *signal*, not the process. A frozen transmitter reads a perfectly plausible value and a
missing sensor has no value at all, so no model of normal values can see either; what is
abnormal is the length of a run (identical readings, or rows without the sensor). The limit
of each sensor is ``factor`` times the longest run seen on learned (normal) data, and at
least ``min_run`` readings (runs still open at the end of warm-up count as learned), so a
sensor that rests at a constant value (an idle speed of 0, a coarse resolution) is not
called stuck for doing what it always does; one that never varied during warm-up never is. A run that has
crossed its limit is never learned as normal. Values must be the raw readings (smoothing
would hide a freeze).

>>> h = SensorHealth(min_run=5, factor=2.0)
>>> for i in range(50):
...     _ = h.update({"a": float(i % 3), "b": 1.0}, learn=True)
>>> h.end_warmup()  # b was constant all along: that is its normal
>>> [h.update({"a": 7.0, "b": 1.0}, learn=False)["a"] for _ in range(3)][-1]
('stuck', 0.6)
>>> for _ in range(20):
...     out = h.update({"b": 1.0}, learn=False)
>>> out["a"]
('dropout', 4.0)
>>> out["b"]
('stuck', 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class SensorHealth:
    """Run-length checks per sensor: stuck values and missing readings.

    Parameters
    ----------
    min_run
        Smallest limit (readings) for either run.
    factor
        Limit = ``factor`` x the longest run seen while learning.
    """

    def __init__(self, min_run: int = 60, factor: float = 3.0) -> None:
        self.min_run = min_run
        self.factor = factor
        # sensor -> [last value, same-value run, its limit, missing run, its limit, ever changed]
        self._st: dict[str, list[float]] = {}

    def _limit(self, longest: float) -> float:
        return max(float(self.min_run), self.factor * longest)

    def end_warmup(self) -> None:
        """Count the runs still open at the end of warm-up as normal; a sensor constant all
        through warm-up is one that does not normally vary, and is never called stuck."""
        for s in self._st.values():
            s[2] = max(s[2], self._limit(s[1])) if s[5] else math.inf  # never varied: cannot stick
            s[4] = max(s[4], self._limit(s[3]))

    def update(self, x: Mapping[str, float], learn: bool) -> dict[str, tuple[str, float]]:
        """Feed one raw row; per sensor the worse check and its run over its limit."""
        out: dict[str, tuple[str, float]] = {}
        st = self._st
        for k, v in x.items():
            s = st.get(k)
            if s is None:
                st[k] = [v, 1.0, float(self.min_run), 0.0, float(self.min_run), 0.0]
                continue
            if s[3]:  # back after missing rows: learn the gap if it was normal
                if learn and s[3] <= s[4]:
                    s[4] = self._limit(s[3]) if s[4] < self._limit(s[3]) else s[4]
                s[3] = 0.0
            if v == s[0]:
                s[1] += 1.0
            else:
                if learn and s[1] <= s[2]:
                    s[2] = self._limit(s[1]) if s[2] < self._limit(s[1]) else s[2]
                s[0], s[1], s[5] = v, 1.0, 1.0
        for k, s in st.items():
            if k not in x:
                s[3] += 1.0
            stuck = s[1] / s[2]
            gone = s[3] / s[4]
            out[k] = ("dropout", gone) if gone > stuck else ("stuck", round(stuck, 6))
        return out
