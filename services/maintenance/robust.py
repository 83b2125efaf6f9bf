"""Theil-Sen slope with Sen's confidence interval, and the time until a limit is reached.

Why Theil-Sen: the median of pairwise slopes ignores up to ~29% outliers (spikes, a stuck
stretch), where least squares is dragged by a single bad point; and its rank-based interval
gives the uncertainty band of the time-to-limit estimate without assuming Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlopeFit:
    """Slope (per unit of x), its confidence interval and the fitted level at ``x_end``."""

    slope: float
    slope_low: float
    slope_high: float
    level_end: float
    x_end: float
    n: int


def theil_sen(x: np.ndarray, y: np.ndarray, z: float = 1.96) -> SlopeFit:
    """Fit y = a + b x robustly; ``z`` sets the two-sided confidence level (1.96: 95%).

    >>> x = np.arange(10.0); fit = theil_sen(x, 2.0 * x + 1.0)
    >>> (fit.slope, fit.slope_low, fit.slope_high, fit.level_end)
    (2.0, 2.0, 2.0, 19.0)
    >>> y = 2.0 * x + 1.0; y[3] = 500.0  # one wild outlier barely moves the slope
    >>> round(theil_sen(x, y).slope, 6)
    2.0
    """
    n = len(x)
    if n < 3:
        raise ValueError("theil_sen needs at least 3 points")
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    slopes = np.sort((y[j] - y[i])[keep] / dx[keep])
    m = len(slopes)
    slope = float(np.median(slopes))
    # Sen (1968): the interval's ends are order statistics of the pairwise slopes.
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo = max(int(math.floor((m - c) / 2.0)), 0)
    hi = min(int(math.ceil((m + c) / 2.0)), m - 1)
    intercept = float(np.median(y - slope * x))
    x_end = float(x[-1])
    return SlopeFit(slope, float(slopes[lo]), float(slopes[hi]), intercept + slope * x_end, x_end, n)


@dataclass(frozen=True)
class TimeToLimit:
    """Predicted time (in x units) until ``limit`` is reached, with a band from the slope CI."""

    expected: float
    low: float  # if the trend is as steep as the interval allows
    high: float  # if it is as shallow as the interval allows


def time_to_limit(fit: SlopeFit, limit: float) -> TimeToLimit | None:
    """Time from ``fit.x_end`` until the fitted line reaches ``limit``; None when the trend
    does not head towards the limit with confidence (its whole interval must point there).

    >>> fit = SlopeFit(slope=2.0, slope_low=1.0, slope_high=4.0, level_end=10.0, x_end=0.0, n=20)
    >>> time_to_limit(fit, 30.0)
    TimeToLimit(expected=10.0, low=5.0, high=20.0)
    >>> time_to_limit(fit, 5.0) is None  # moving away from a low limit
    True
    """
    gap = limit - fit.level_end
    if gap == 0:
        return TimeToLimit(0.0, 0.0, 0.0)
    if gap > 0 and fit.slope_low > 0:
        return TimeToLimit(gap / fit.slope, gap / fit.slope_high, gap / fit.slope_low)
    if gap < 0 and fit.slope_high < 0:
        return TimeToLimit(gap / fit.slope, gap / fit.slope_low, gap / fit.slope_high)
    return None
