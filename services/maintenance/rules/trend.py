"""Trend to limit: how long until a slowly drifting sensor crosses its critical limit."""

from __future__ import annotations

from collections import deque

import numpy as np

from maintenance.robust import theil_sen, time_to_limit
from maintenance.rules.base import AlertRule, Finding, Observation, Reading
from maintenance.words import hours, hours_band, num, sensor_name, value_with_unit

_US_PER_HOUR = 3_600_000_000


class TrendToLimit(AlertRule):
    """Decimates readings into ``bucket_s``-second means (bounded memory: the last
    ``max_points`` buckets), fits a Theil-Sen slope each time a bucket closes, and finds a
    condition when the critical limit (high or low, from the registry) is predicted within
    ``horizon_h`` hours with a confident trend. Severity is critical inside
    ``critical_horizon_h``. Evidence: hours_to_limit with hours_to_limit_low/high (from the
    slope's 95% interval), slope_per_hour, value (fitted level now), limit.

    >>> rule = TrendToLimit(horizon_h=24, critical_horizon_h=6, bucket_s=3600, min_points=6)
    >>> spec = {"unit": "degC", "critical_high": 95.0}
    >>> r = lambda h: Reading("temp", ts=h * _US_PER_HOUR, value=50 + 1.5 * h, ingest_time=0, spec=spec)
    >>> found = [(h, f) for h in range(40) for f in rule.update(r(h))]
    >>> h, f = found[0]  # 1.5 degC/h: 24 h before 95 degC is reached at 59 degC (hour 6)
    >>> (h, f.severity, round(f.evidence["hours_to_limit"], 1), round(f.evidence["slope_per_hour"], 2))
    (7, 'warning', 24.0, 1.5)
    >>> [h for h, f in found if f.severity == "critical"][0]  # 6 h left at 86 degC (hour 24)
    25
    >>> f.title
    'Temperature rising 1.5 degC/h: critical limit 95 degC in about 24.0 h (24.0-24.0 h)'
    """

    name = "trend_to_limit"

    def __init__(self, horizon_h: float = 72.0, critical_horizon_h: float = 12.0, bucket_s: float = 600.0,
                 max_points: int = 72, min_points: int = 36) -> None:
        self.horizon_h = horizon_h
        self.critical_horizon_h = critical_horizon_h
        self.bucket_s = bucket_s
        self.max_points = max_points
        self.min_points = min_points
        self._points: deque[tuple[float, float]] = deque(maxlen=max_points)  # (hours, mean)
        self._bucket = -1
        self._sum = 0.0
        self._n = 0

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading):
            return []
        bucket = int(obs.ts // int(self.bucket_s * 1e6))
        if bucket < self._bucket:  # late reading for a closed bucket: too late to matter
            return []
        found: list[Finding] = []
        if bucket > self._bucket and self._n:
            centre_h = (self._bucket + 0.5) * self.bucket_s / 3600.0
            self._points.append((centre_h, self._sum / self._n))
            self._sum, self._n = 0.0, 0
            found = self._evaluate(obs)
        self._bucket = bucket
        self._sum += obs.value
        self._n += 1
        return found

    def _evaluate(self, obs: Reading) -> list[Finding]:
        spec = obs.spec or {}
        if len(self._points) < self.min_points:
            return []
        x = np.fromiter((p[0] for p in self._points), float, len(self._points))
        y = np.fromiter((p[1] for p in self._points), float, len(self._points))
        fit = theil_sen(x - x[-1], y)
        for key in ("critical_high", "critical_low"):
            limit = spec.get(key)
            if limit is None:
                continue
            beyond = fit.level_end >= limit if key == "critical_high" else fit.level_end <= limit
            ttl = None if beyond else time_to_limit(fit, float(limit))
            if ttl is None or ttl.expected > self.horizon_h:
                continue
            severity = "critical" if ttl.expected <= self.critical_horizon_h else "warning"
            unit = spec.get("unit", "")
            way = "rising" if fit.slope > 0 else "falling"
            title = (f"{sensor_name(obs.sensor)} {way} {num(abs(fit.slope))} {unit}/h: critical limit "
                     f"{value_with_unit(float(limit), unit)} in about {hours(ttl.expected)} "
                     f"({hours_band(ttl.low, ttl.high)})")
            evidence = {"hours_to_limit": ttl.expected, "hours_to_limit_low": ttl.low,
                        "hours_to_limit_high": ttl.high, "slope_per_hour": fit.slope,
                        "value": fit.level_end, "limit": float(limit), "points": float(fit.n)}
            return [Finding(self.name, obs.sensor, severity, title, obs.ts, evidence,
                            action=spec.get("recommended_action"))]
        return []
