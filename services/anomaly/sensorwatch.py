"""Per-sensor alarms beside the machine-level verdict: drift, stuck value, dropout.

Why separate channels: when a single sensor is responsible (a bearing temperature creeping
away from the load, a frozen transmitter, a sensor that stopped reporting), maintenance
needs *that sensor* named in its own event (``kind='univariate'``), and these slow or
signal-level faults must not wait for the machine-level score, which is tuned for sudden
multivariate changes. Each (check, sensor) channel has its own on/off state with
hysteresis: drift turns on above ``drift_threshold`` and off below ``drift_off`` times it;
stuck/dropout turn on when the run passes its limit and off when the run ends. A drifting
sensor also pulls the predictions of the sensors regressed on it, so a drift channel opens
only for a sensor whose score is at least ``lead`` times the machine's largest drift score
(the one responsible, not its followers), and, while one sensor's drift episode is open and
for ``holdoff`` rows after it closes (the regressors' long lags still carry the fault), no
other sensor's drift episode opens; a stuck or missing sensor holds drift openings the same
way (its stale value corrupts the regressions of the others).

The drift model needs much more data than the machine's warm-up (thermal lags of tens of
minutes, hourly breaks), so it is *armed* only after ``arm_after`` learned rows; until then
it learns from every row (its own warm-up: what happens then is normal), after that only
from rows the machine judges normal while every sensor's drift score is below
``learn_below`` (so a slow fault is not learned as normal). The drift model learns nothing
while a sensor is stuck or missing (:attr:`SensorWatch.faulty_sensors`): a transmitter frozen
for hours would otherwise become its normal, and its recovery a false alarm. (The machine
model keeps its own policy: its recent-level trackers must follow the running machine.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from anomaly.detectors.drift import ResidualDrift
from anomaly.detectors.health import SensorHealth

CHECK_MODELS = {"drift": "residualdrift", "stuck": "stuck", "dropout": "dropout"}


@dataclass(frozen=True, slots=True)
class SensorAlarm:
    """One sensor channel's state on one row (shaped like a Verdict for event building)."""

    ts_micros: int
    sensor: str
    check: str                     # drift | stuck | dropout
    score: float
    threshold: float
    is_anomaly: bool
    state_changed: bool
    model: str = ""
    model_version: str = ""
    contributions: dict[str, float] = field(default_factory=dict)


class SensorWatch:
    """Drift, stuck and dropout channels of one machine's sensors.

    >>> w = SensorWatch(drift=None, health=SensorHealth(min_run=5))
    >>> for i in range(30):
    ...     _ = w.step(i, {"a": float(i % 2)}, {"a": 0.5}, learn=True, armed=False)
    >>> w.end_warmup()
    >>> alarms = [w.step(30 + i, {"a": 3.0}, {"a": 3.0}, learn=True, armed=True) for i in range(6)]
    >>> [(a.sensor, a.check, a.state_changed) for a in alarms[-1]]
    [('a', 'stuck', True)]
    """

    def __init__(
        self,
        drift: ResidualDrift | None = None,
        health: SensorHealth | None = None,
        drift_threshold: float = 6.0,
        drift_off: float = 0.6,
        learn_below: float = 2.0,
        lead: float = 0.5,
        holdoff: int = 2400,
        arm_after: int = 3600,
        model_version: str = "1",
    ) -> None:
        self.drift = drift.clone() if drift is not None else None
        self.health = SensorHealth(health.min_run, health.factor) if health is not None else None
        self.drift_threshold = drift_threshold
        self.drift_off = drift_off
        self.learn_below = learn_below
        self.lead = lead
        self.holdoff = holdoff
        self.rows = 0
        self._drift_owner: tuple[str, int] | None = None  # sensor of the last drift episode, its last row
        self.arm_after = arm_after
        self.model_version = model_version
        self.learned = 0
        self._on: dict[tuple[str, str], bool] = {}

    def clone(self) -> SensorWatch:
        return SensorWatch(self.drift, self.health, self.drift_threshold, self.drift_off, self.learn_below,
                           self.lead, self.holdoff, self.arm_after, self.model_version)

    @property
    def faulty_sensors(self) -> frozenset[str]:
        """The sensors whose stuck or dropout channel is on (as of the last row): their values
        are not normal data."""
        return frozenset(s for (check, s), on in self._on.items() if on and check != "drift")

    def rebaseline(self, ts: int) -> list[SensorAlarm]:
        """The machine moved to a new operating point: the drift model starts again (it re-arms
        after ``arm_after`` learned rows); open drift channels close (returned)."""
        out: list[SensorAlarm] = []
        for (check, sensor), on in list(self._on.items()):
            if check == "drift" and on:
                self._set(out, ts, sensor, "drift", 0.0, self.drift_threshold, False)
        if self.drift is not None:
            self.drift = self.drift.clone()
        self.learned = 0
        self._drift_owner = None
        return out

    def end_warmup(self) -> None:
        if self.health is not None:
            self.health.end_warmup()

    def step(self, ts: int, raw: Mapping[str, float], smoothed: dict[str, float], learn: bool,
             armed: bool) -> list[SensorAlarm]:
        """Update every channel with one row; return the channels that are on or just changed."""
        out: list[SensorAlarm] = []
        if self.health is not None:
            for sensor, (check, ratio) in self.health.update(raw, learn).items():
                other = "dropout" if check == "stuck" else "stuck"
                if self._on.get((other, sensor)):  # close the other check before opening this one
                    self._set(out, ts, sensor, other, 0.0, 1.0, False)
                self._set(out, ts, sensor, check, ratio, 1.0, armed and ratio > 1.0)
                if armed and ratio > 1.0:  # its frozen or stale value corrupts every regression
                    self._drift_owner = (sensor, self.rows + 1)
        if self.drift is not None and smoothed:
            out += self._drift(ts, smoothed, learn, armed)
        return out

    def _drift(self, ts: int, s: dict[str, float], learn: bool, armed: bool) -> list[SensorAlarm]:
        det = self.drift
        assert det is not None
        live = armed and self.learned >= self.arm_after
        scores = det.contributions_one(s) if live else {}
        out: list[SensorAlarm] = []
        th = self.drift_threshold
        lead = self.lead * max(scores.values(), default=0.0)
        self.rows += 1
        owner = self._drift_owner
        held = owner is not None and self.rows - owner[1] <= self.holdoff
        for sensor, sc in scores.items():
            was = self._on.get(("drift", sensor), False)
            on = (sc > th and sc >= lead and (not held or owner[0] == sensor)) or (  # type: ignore[index]
                was and sc > th * self.drift_off)
            self._set(out, ts, sensor, "drift", sc, th, on)
            if on:
                self._drift_owner = owner = (sensor, self.rows)
                held = True
        if self.faulty_sensors:
            det.observe_one(s)
        elif not live or (learn and max(scores.values(), default=0.0) < self.learn_below):
            det.learn_one(s)
            self.learned += 1
        else:
            det.observe_one(s)
        return out

    def _set(self, out: list[SensorAlarm], ts: int, sensor: str, check: str, score: float,
             threshold: float, on: bool) -> None:
        key = (check, sensor)
        was = self._on.get(key, False)
        if on or was:
            self._on[key] = on
            out.append(SensorAlarm(ts, sensor, check, score, threshold, on, on != was,
                                   CHECK_MODELS[check], self.model_version, {sensor: 1.0}))
