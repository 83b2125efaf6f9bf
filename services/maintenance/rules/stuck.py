"""Sensor health: a value that does not move at all is usually a dead sensor, not a calm machine."""

from __future__ import annotations

from maintenance.rules.base import AlertRule, Finding, Observation, Reading
from maintenance.words import duration, sensor_name, value_with_unit


class StuckSensor(AlertRule):
    """Finds a condition when at least ``min_readings`` consecutive readings spanning at least
    ``min_duration_s`` seconds stay within ``tolerance`` of the first of them (flatline).

    >>> rule = StuckSensor(min_readings=5, min_duration_s=3)
    >>> r = lambda i, v: Reading("flow", ts=i * 1_000_000, value=v, ingest_time=0)
    >>> [len(rule.update(r(i, 4.2))) for i in range(6)]
    [0, 0, 0, 0, 1, 1]
    >>> rule.update(r(6, 4.3))  # it moved: the run starts again
    []
    """

    name = "stuck_sensor"

    def __init__(self, min_readings: int = 30, min_duration_s: float = 600.0, tolerance: float = 0.0) -> None:
        self.min_readings = min_readings
        self.min_duration_s = min_duration_s
        self.tolerance = tolerance
        self._value: float | None = None
        self._since = 0
        self._run = 0

    def update(self, obs: Observation) -> list[Finding]:
        if not isinstance(obs, Reading):
            return []
        if self._value is None or abs(obs.value - self._value) > self.tolerance:
            self._value, self._since, self._run = obs.value, obs.ts, 1
            return []
        self._run += 1
        lasting = (obs.ts - self._since) / 1e6
        if self._run < self.min_readings or lasting < self.min_duration_s:
            return []
        unit = (obs.spec or {}).get("unit", "")
        title = (f"{sensor_name(obs.sensor)} stuck at {value_with_unit(obs.value, unit)} "
                 f"for {duration(lasting)} ({self._run} readings without change)")
        evidence = {"value": obs.value, "readings": float(self._run), "duration_s": lasting}
        return [Finding(self.name, obs.sensor, "warning", title, obs.ts, evidence,
                        action="Check the sensor and its wiring; the value has not changed.")]
