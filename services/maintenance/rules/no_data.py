"""Sensor health: silence. Checked on the service's timer, because no reading means no event."""

from __future__ import annotations

from maintenance.rules.base import AlertRule, Finding, Observation, Reading
from maintenance.words import duration, sensor_name


class NoData(AlertRule):
    """Finds a condition when no reading of a sensor that has reported before arrived for
    ``max_silence_s`` seconds of wall-clock time (``0`` turns the rule off), counted from
    when the service began listening at the latest (a platform stopped for an hour did not hear
    an hour of silence). The service merges the findings of a machine's silent sensors into one
    alert (maintenance.problems).

    >>> rule = NoData(max_silence_s=60)
    >>> rule.check(now=10**9)  # never reported: nothing to miss
    []
    >>> rule.update(Reading("temp", ts=0, value=1.0, ingest_time=0, arrived=10**9))
    []
    >>> rule.check(now=10**9 + 30_000_000)
    []
    >>> [f.evidence["silence_s"] for f in rule.check(now=10**9 + 90_000_000)]
    [90.0]
    >>> rule.check(now=10**9 + 90_000_000, since=10**9 + 60_000_000)  # restarted 30 s ago
    []
    """

    name = "no_data"

    def __init__(self, max_silence_s: float = 600.0) -> None:
        self.max_silence_s = max_silence_s
        self._sensor = ""
        self._last_arrival = 0
        self._last_ts = 0

    def update(self, obs: Observation) -> list[Finding]:
        if isinstance(obs, Reading):
            self._sensor = obs.sensor
            self._last_arrival = max(self._last_arrival, obs.arrived)
            self._last_ts = max(self._last_ts, obs.ts)
        return []

    def check(self, now: int, since: int = 0) -> list[Finding]:
        if not self.max_silence_s or not self._last_arrival:
            return []
        silence = (now - max(self._last_arrival, since)) / 1e6
        if silence <= self.max_silence_s:
            return []
        title = f"{sensor_name(self._sensor)}: no data for {duration(silence)}"
        return [Finding(self.name, self._sensor, "warning", title, now,
                        {"silence_s": silence, "last_ts_s": self._last_ts / 1e6},
                        action="Check the gateway and the sensor's connection.")]
