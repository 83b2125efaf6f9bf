"""Has a lasting anomaly settled at a new operating point, or is it still developing?

Why: a machine moved to a new stable level (another product, a replaced sensor, a changed
set point) is not a fault that lasts for ever, but a model frozen on the old level alarms for
ever. A developing fault (bearing wear) must not be learned as the new normal either. The
difference is motion: after a regime change the readings are flat again; during wear they keep
moving away from the old normal. So, while an episode lasts, each sensor's (smoothed) readings
are averaged over consecutive blocks of ``block`` rows. The episode has *settled* when it has
lasted ``min_rows`` rows and, over the last ``blocks`` block means of every sensor,

- they lie within ``max_step`` normal standard deviations of each other (flat),
- they do not move steadily away from the old normal (monotone block means heading away
  from it are a trend, however small), and
- the readings inside the blocks are at most ``max_spread`` times as spread as normal (a
  stable level, not a machine shaking itself apart), and
- no sensor's newest block mean is beyond its warning limits from the asset registry
  (:attr:`limits`): a motor that stays hot after its cooling failed is steady, and a fault.

The normal mean and standard deviation of each sensor come from the rows the model was
(re)calibrated on. Only a few numbers per sensor are kept, so snapshots stay small.

>>> import random
>>> rng = random.Random(1)
>>> rc = RegimeCheck(block=50, blocks=4, min_rows=300)
>>> rc.baseline([{"p": 4.0 + rng.gauss(0, 0.1)} for _ in range(400)])
>>> [rc.push({"p": 6.0 + rng.gauss(0, 0.02)}) for _ in range(300)][-1]  # a new, stable level
True
>>> rc.shifts()["p"] > 15  # in normal standard deviations
True
>>> rc.reset()
>>> any(rc.push({"p": 6.0 + i * 0.002 + rng.gauss(0, 0.02)}) for i in range(2000))  # still rising
False
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


class RegimeCheck:
    """Settled-or-developing test of one machine's anomaly episode (see module docstring).

    Parameters
    ----------
    block
        Rows per block mean (at 5-s readings the default is 15 min).
    blocks
        Block means compared (the default covers the last hour).
    max_step
        Largest spread of those block means, in normal standard deviations of the sensor.
    max_spread
        Largest standard deviation inside a block, in normal standard deviations.
    min_rows
        Rows an episode must last before it can settle (the default is 2 h at 5 s).
    rel_floor
        Floor on a sensor's normal standard deviation, relative to its normal mean (a sensor
        that was constant while the model learned still gets a yardstick).
    """

    def __init__(self, block: int = 180, blocks: int = 4, max_step: float = 2.0, max_spread: float = 3.0,
                 min_rows: int = 1440, rel_floor: float = 0.001) -> None:
        if block < 1 or blocks < 3:
            raise ValueError("need block >= 1 and blocks >= 3")
        self.block = block
        self.blocks = blocks
        self.max_step = max_step
        self.max_spread = max_spread
        self.min_rows = min_rows
        self.rel_floor = rel_floor
        self._normal: dict[str, tuple[float, float]] = {}  # sensor -> (mean, sd)
        self._acc: dict[str, list[float]] = {}  # sensor -> [n, sum, sum of squares] of the open block
        self._filled = 0  # rows in the open block
        self._means: deque[dict[str, tuple[float, float]]] = deque(maxlen=blocks)  # (mean, sd)
        self._rows = 0  # rows of the episode so far
        self.limits: dict[str, tuple[float | None, float | None]] = {}  # sensor -> warning (low, high)

    def clone(self) -> RegimeCheck:
        return RegimeCheck(self.block, self.blocks, self.max_step, self.max_spread, self.min_rows,
                           self.rel_floor)

    def baseline(self, rows: Iterable[Mapping[str, float]]) -> None:
        """Learn each sensor's normal mean and standard deviation from ``rows``."""
        acc: dict[str, list[float]] = {}
        for r in rows:
            for k, v in r.items():
                a = acc.setdefault(k, [0.0, 0.0, 0.0])
                a[0] += 1.0
                a[1] += v
                a[2] += v * v
        self._normal = {}
        for k, (n, s, ss) in acc.items():
            mean, sd = _mean_sd(n, s, ss)
            self._normal[k] = (mean, max(sd, self.rel_floor * abs(mean), 1e-9))
        self.reset()

    def reset(self) -> None:
        """Forget the episode (call when one opens or closes)."""
        self._acc = {}
        self._filled = 0
        self._means.clear()
        self._rows = 0

    def push(self, s: Mapping[str, float]) -> bool:
        """Add one row of the open episode; True when the episode has settled."""
        self._rows += 1
        acc = self._acc
        for k, v in s.items():
            a = acc.get(k)
            if a is None:
                a = acc[k] = [0.0, 0.0, 0.0]
            a[0] += 1.0
            a[1] += v
            a[2] += v * v
        self._filled += 1
        if self._filled < self.block:
            return False
        self._means.append({k: _mean_sd(*a) for k, a in acc.items() if a[0] > 0})
        self._acc = {}
        self._filled = 0
        return self._rows >= self.min_rows and len(self._means) == self.blocks and self._settled()

    def _settled(self) -> bool:
        if not self._normal:
            return False
        for k, (low, high) in self.limits.items():
            level = self._means[-1].get(k)
            if level is not None and ((low is not None and level[0] <= low)
                                      or (high is not None and level[0] >= high)):
                return False
        for k, (mean0, sd0) in self._normal.items():
            if any(k not in b for b in self._means):
                return False
            means = [b[k][0] for b in self._means]
            if max(means) - min(means) > self.max_step * sd0:
                return False
            if max(b[k][1] for b in self._means) > self.max_spread * sd0:
                return False
            steps = [b - a for a, b in zip(means, means[1:], strict=False)]
            away = means[-1] - mean0
            if all(d * away > 0 for d in steps):  # every block further from the old normal
                return False
        return True

    def shifts(self) -> dict[str, float]:
        """Each sensor's newest block mean minus its old normal mean, in normal standard deviations."""
        if not self._means:
            return {}
        last = self._means[-1]
        return {k: (last[k][0] - m) / sd for k, (m, sd) in self._normal.items() if k in last}

    def levels(self) -> dict[str, float]:
        """Each sensor's newest block mean (its new level)."""
        return {k: m for k, (m, _) in self._means[-1].items()} if self._means else {}


def warning_limits(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """``sensor -> (low, high)`` warning limits of a machine's registry sensor specs (a missing
    warning limit falls back to the critical one)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for sensor, spec in specs.items():
        low = spec.get("warning_low") if spec.get("warning_low") is not None else spec.get("critical_low")
        high = spec.get("warning_high") if spec.get("warning_high") is not None else spec.get("critical_high")
        if low is not None or high is not None:
            out[sensor] = (low, high)
    return out


def _mean_sd(n: float, s: float, ss: float) -> tuple[float, float]:
    mean = s / n
    return mean, math.sqrt(max(ss / n - mean * mean, 0.0))
