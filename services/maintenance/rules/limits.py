"""Warning and critical limits from the asset registry."""

from __future__ import annotations

from maintenance.rules.base import AlertRule, Finding, Observation, Reading


class LimitRule(AlertRule):
    """Finds a condition when a reading is beyond the sensor's warning or critical limit
    (``warning_high``, ``critical_high``, ``warning_low``, ``critical_low`` in the registry).
    Sensors without limits never fire.

    >>> rule = LimitRule()
    >>> spec = {"unit": "degC", "warning_high": 80.0, "critical_high": 95.0,
    ...         "recommended_action": "Check lubrication."}
    >>> r = lambda v: Reading("bearing_temp", ts=0, value=v, ingest_time=0, spec=spec)
    >>> rule.update(r(70.0))
    []
    >>> [(f.severity, f.evidence["limit"]) for f in rule.update(r(85.0))]
    [('warning', 80.0)]
    >>> [(f.severity, f.action) for f in rule.update(r(99.0))]
    [('critical', 'Check lubrication.')]
    """

    name = "limit"

    def __init__(self) -> None:
        pass

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading) or not obs.spec:
            return []
        spec, v = obs.spec, obs.value
        checks = (("critical", "critical_high", 1), ("critical", "critical_low", -1),
                  ("warning", "warning_high", 1), ("warning", "warning_low", -1))
        for severity, key, side in checks:
            limit = spec.get(key)
            if limit is not None and (v - limit) * side > 0:
                word = "above" if side > 0 else "below"
                unit = spec.get("unit", "")
                title = f"{obs.sensor} {v:.4g} {unit} {word} {severity} limit {limit:.4g}"
                evidence = {"value": v, "limit": float(limit)}
                return [Finding(self.name, obs.sensor, severity, title, obs.ts, evidence,
                                action=spec.get("recommended_action"))]
        return []
