"""Warning and critical limits from the asset registry."""

from __future__ import annotations

from dataclasses import dataclass

from maintenance.rules.base import AlertRule, Finding, Observation, Reading, severity_rank
from maintenance.words import num, sensor_name, value_with_unit

_CHECKS = (("critical", "critical_high", 1), ("critical", "critical_low", -1),
           ("warning", "warning_high", 1), ("warning", "warning_low", -1))


@dataclass(frozen=True)
class _Breach:
    severity: str
    side: int  # 1: above a high limit, -1: below a low limit
    limit: float
    value: float

    def words(self, unit: str) -> str:
        where = "above" if self.side > 0 else "below"
        return f"{where} its {self.severity} limit {value_with_unit(self.limit, unit)}"


class LimitRule(AlertRule):
    """Finds a condition when a reading is beyond the sensor's warning or critical limit
    (``warning_high``, ``critical_high``, ``warning_low``, ``critical_low`` in the registry).
    Sensors without limits never fire.

    An alert's severity only rises (see maintenance.lifecycle), so once a critical limit was
    crossed, a later reading beyond only the warning limit must not rename the alert after
    the warning limit: for ``hold_s`` seconds after its last finding the rule remembers the
    worst breach and keeps reporting it (severity, title, evidence ``value``/``limit``), with
    the latest reading as ``current_value``/``current_limit``. The clock is the reading's
    arrival (as the alert book's) or, without one, its sample time. The service sets
    ``hold_s`` to twice its alert quiet period: an alert auto-resolves after one quiet period
    without findings, and re-opens with its severity if the condition recurs within the next.

    >>> rule = LimitRule()
    >>> spec = {"unit": "degC", "warning_high": 80.0, "critical_high": 95.0,
    ...         "recommended_action": "Check lubrication."}
    >>> r = lambda v, t=0: Reading("bearing_temp", ts=t, value=v, ingest_time=0, spec=spec, arrived=t)
    >>> rule.update(r(70.0))
    []
    >>> [(f.severity, f.evidence["limit"]) for f in rule.update(r(85.0))]
    [('warning', 80.0)]
    >>> [(f.severity, f.action) for f in rule.update(r(99.0))]
    [('critical', 'Check lubrication.')]
    >>> [(f.severity, f.title, f.evidence) for f in rule.update(r(85.0, 60_000_000))]  # still hot
    ... # doctest: +NORMALIZE_WHITESPACE
    [('critical', 'Bearing temperature 99 degC, above its critical limit 95 degC
      (now 85, above its warning limit 80 degC)',
      {'value': 99.0, 'limit': 95.0, 'side': 1.0, 'current_value': 85.0, 'current_limit': 80.0})]
    >>> [(f.severity, f.title) for f in rule.update(r(85.0, 2 * 7200 * 10**6))]  # much later
    [('warning', 'Bearing temperature 85 degC, above its warning limit 80 degC')]
    """

    name = "limit"

    def __init__(self, hold_s: float = 7200.0) -> None:
        self.hold_s = hold_s
        self._worst: _Breach | None = None
        self._last_at = 0

    def __setstate__(self, state: dict) -> None:
        """Restores rules pickled before the rule had state (the service's table survives upgrades)."""
        self.__dict__.update({"hold_s": 7200.0, "_worst": None, "_last_at": 0, **state})

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading) or not obs.spec:
            return []
        spec, v = obs.spec, obs.value
        breach = next((_Breach(sev, side, float(spec[key]), v) for sev, key, side in _CHECKS
                       if spec.get(key) is not None and (v - spec[key]) * side > 0), None)
        if breach is None:
            return []
        now = obs.arrived or obs.ts
        worst = self._worst
        if worst is not None and now - self._last_at > self.hold_s * 1e6:
            worst = None
        if worst is None or severity_rank(breach.severity) >= severity_rank(worst.severity):
            worst = breach
        self._worst, self._last_at = worst, now
        unit = spec.get("unit", "")
        title = f"{sensor_name(obs.sensor)} {value_with_unit(worst.value, unit)}, {worst.words(unit)}"
        evidence = {"value": worst.value, "limit": worst.limit, "side": float(worst.side)}
        if worst is not breach:
            title += f" (now {num(v)}, {breach.words(unit)})"
            evidence.update(current_value=v, current_limit=breach.limit)
        return [Finding(self.name, obs.sensor, worst.severity, title, obs.ts, evidence,
                        action=spec.get("recommended_action"))]
