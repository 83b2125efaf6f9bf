"""From findings to machine problems: which alert a finding belongs to, how the problem is
described in plain words, and what probably causes it.

Why: rules see one sensor at a time, but a person acts on one machine problem. A developing
bearing fault trips a vibration limit, a bearing-temperature trend and the anomaly detector on
several sensors: that is one alert with those sensors as evidence, not five. The grouping
(:func:`problem_of`) is:

- ``condition``: limits, trends to a limit and persistent anomalies of one machine that are
  active at the same time are one episode of the machine's condition (one alert);
- ``sensor_fault``: a stuck or silent sensor (stuck_sensor, the dropout and stuck detectors)
  is a problem of that sensor, and the machine-level anomalies it causes join it;
- ``clock_skew``: one alert per gateway; while it is active, the anomaly detector's findings
  on that gateway's machine join it (readings stamped by a wrong clock, and the jump back when
  it is corrected, look unusual to a detector), as evidence that cannot raise its severity;
- ``no_data``: one alert per machine naming every silent sensor; when every one of them already
  has an active sensor fault (the dropout detector reports a silence after 2 min, the no-data
  rule after 15), it joins that alert instead (``AlertBook.problem_of``).

Limits and trends to a limit are physical values and always count as the machine's condition.

>>> f = Finding("limit", "vibration", "critical", "t", 0)
>>> problem_of(f), problem_of(Finding("clock_skew", "speed", "warning", "t", 0, subject="gw-1"))
(('condition', '*'), ('clock_skew', 'gw-1'))
>>> problem_of(Finding("persistent_anomaly", "flow", "warning", "t", 0, detector="dropout"))
('sensor_fault', 'flow')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from maintenance.rules.base import Finding, severity_rank
from maintenance.rules.persistent_anomaly import SENSOR_FAULT_MODELS
from maintenance.words import against_normal, duration, sensor_name, value_with_unit

Problem = tuple[str, str]  # (group, subject): ("condition", "*"), ("clock_skew", gateway), ...
_HEADLINE_ORDER = {"clock_skew": 4, "no_data": 4, "stuck_sensor": 4, "limit": 3, "trend_to_limit": 2,
                   "persistent_anomaly": 1}
_ALIAS = {"limit": "limit", "trend_to_limit": "trend", "persistent_anomaly": "anomaly",
          "stuck_sensor": "stuck", "no_data": "silence", "clock_skew": "clock"}


def problem_of(f: Finding) -> Problem:
    """The machine problem a finding is evidence of (see the module docstring)."""
    if f.rule == "clock_skew":
        return ("clock_skew", f.subject or "*")
    if f.rule == "no_data":
        return ("no_data", "*")
    if f.rule == "stuck_sensor" or (f.rule == "persistent_anomaly" and f.detector in SENSOR_FAULT_MODELS):
        return ("sensor_fault", f.sensor)
    return ("condition", "*")


class Baseline:
    """The normal level and spread of one sensor: exponentially weighted mean and variance
    over about the last ``memory`` readings (an exact running mean until then). The service
    feeds it only while the machine has no open condition alert, so a developing fault does
    not become the new normal.

    >>> b = Baseline(memory=100)
    >>> for i in range(200):
    ...     b.learn(3.0 + (0.4 if i % 2 else -0.4))
    >>> b.ready, round(b.mean, 1), round(b.sd, 1)
    (True, 3.0, 0.4)
    """

    def __init__(self, memory: int = 3600, min_readings: int = 60) -> None:
        self.memory = memory
        self.min_readings = min_readings
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def learn(self, x: float) -> None:
        self.n += 1
        a = 1.0 / min(self.n, self.memory)
        d = x - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    @property
    def ready(self) -> bool:
        return self.n >= self.min_readings

    @property
    def sd(self) -> float:
        return math.sqrt(max(self.var, 0.0))


@dataclass
class Contribution:
    """What one (rule, sensor) says about a problem: the latest finding, with its first and
    last sample time in this alert and the worst severity it reported recently."""

    rule: str
    sensor: str
    severity: str
    title: str
    evidence: dict[str, float]
    action: str | None
    unit: str
    first_ts: int
    ts: int
    seen_at: int  # input clock of the latest finding, microseconds
    peak: str = "info"  # the worst severity reported within the calm period
    peak_at: int = 0
    sensors: tuple[str, ...] = ()
    secondary: bool = False  # evidence of another contribution's problem: holds warning at most

    def update(self, f: Finding, unit: str, now: int, calm_us: float) -> None:
        if severity_rank(f.severity) >= severity_rank(self.peak) or now - self.peak_at > calm_us:
            self.peak, self.peak_at = f.severity, now
        self.severity, self.title, self.evidence = f.severity, f.title, dict(f.evidence)
        self.action = f.action or self.action
        self.unit = unit or self.unit
        self.ts, self.seen_at = max(self.ts, f.ts), now
        self.sensors = f.sensors or self.sensors

    def weight(self, now: int, calm_us: float) -> int:
        """The severity rank this contribution holds the alert at: its recent peak while it
        is still seen, nothing once it has not been seen for the calm period (hysteresis)."""
        if now - self.seen_at > calm_us:
            return -1
        rank = severity_rank(self.peak) if now - self.peak_at <= calm_us else severity_rank(self.severity)
        return min(rank, 1) if self.secondary else rank

    @property
    def direction(self) -> int:
        """+1 when the sensor is high or rising, -1 when low or falling, 0 when not known."""
        ev = self.evidence
        if self.rule == "limit":
            return int(ev.get("side", 0.0))
        if self.rule == "trend_to_limit":
            return int(math.copysign(1, ev.get("slope_per_hour", 0.0))) if ev.get("slope_per_hour") else 0
        if "value" in ev and "normal_mean" in ev and ev.get("normal_sd") is not None:
            gap = ev["value"] - ev["normal_mean"]
            return 0 if abs(gap) <= 2 * ev["normal_sd"] else (1 if gap > 0 else -1)
        return 0


def contribution(f: Finding, unit: str, now: int, secondary: bool = False) -> Contribution:
    return Contribution(f.rule, f.sensor, f.severity, f.title, dict(f.evidence), f.action, unit,
                        first_ts=f.ts, ts=f.ts, seen_at=now, peak=f.severity, peak_at=now, sensors=f.sensors,
                        secondary=secondary)


def describe(c: Contribution, since: int | None = None) -> str:
    """One contribution in plain words, engineering units, no detector scores; ``since``: the
    sample time the sensor was first seen in this problem (default: this contribution's)."""
    ev, unit, name = c.evidence, c.unit, sensor_name(c.sensor)
    normal = (f", {against_normal(ev['value'], unit, ev['normal_mean'], ev['normal_sd'])}"
              if "value" in ev and "normal_mean" in ev else "")
    lasting = (c.ts - (c.first_ts if since is None else min(since, c.first_ts))) / 1e6
    if c.rule == "limit" and "value" in ev and "limit" in ev:
        text = f"{name} {value_with_unit(ev['value'], unit)}{normal}"
        if lasting >= 60:
            text += f" for {duration(lasting)}"
        text += f"; {c.severity} limit {value_with_unit(ev['limit'], unit)} crossed"
        if "current_value" in ev:
            text += f" (now {value_with_unit(ev['current_value'], unit)})"
        return text
    if c.rule == "persistent_anomaly" and normal and c.sensor != "*":
        lasting = max(lasting, ev.get("episode_s", 0.0))
        text = f"{name} {value_with_unit(ev['value'], unit)}{normal}: unusual for this machine"
        return text + (f" for {duration(lasting)}" if lasting >= 60 else "")
    return c.title


@dataclass(frozen=True)
class Cause:
    """A fault signature: the directions of the sensors a known fault moves together."""

    name: str
    why: str
    moves: tuple[tuple[str, int], ...]
    unless: tuple[tuple[str, int], ...] = field(default=())


CAUSES = (
    Cause("bearing wear", "vibration and bearing temperature rising together",
          (("vibration", 1), ("bearing_temp", 1))),
    Cause("cavitation", "discharge pressure and flow dropping together",
          (("discharge_pressure", -1), ("flow", -1))),
    Cause("motor overheating", "motor temperature rising without more vibration: cooling or overload",
          (("motor_temp", 1),), unless=(("vibration", 1),)),
)


def likely_cause(contributions: list[Contribution]) -> Cause | None:
    """The first fault signature the contributions match (every move present, no 'unless').

    >>> vib = Contribution("limit", "vibration", "critical", "", {"side": 1.0}, None, "mm/s", 0, 0, 0)
    >>> brg = Contribution("trend_to_limit", "bearing_temp", "warning", "", {"slope_per_hour": 0.8},
    ...                    None, "degC", 0, 0, 0)
    >>> likely_cause([vib, brg]).name, likely_cause([vib])
    ('bearing wear', None)
    """
    moved: dict[str, set[int]] = {}
    for c in contributions:
        if c.direction:
            moved.setdefault(c.sensor, set()).add(c.direction)
    for cause in CAUSES:
        if all(d in moved.get(s, ()) for s, d in cause.moves) and \
                not any(d in moved.get(s, ()) for s, d in cause.unless):
            return cause
    return None


def headline(contributions: list[Contribution], now: int, calm_us: float) -> Contribution:
    """The contribution a title leads with: a primary one, the most severe still seen, limits
    before trends before anomalies, then the latest."""
    return max(contributions, key=lambda c: (not c.secondary, c.weight(now, calm_us),
                                             _HEADLINE_ORDER.get(c.rule, 0), c.seen_at))


def title(contributions: list[Contribution], now: int, calm_us: float) -> str:
    head = headline(contributions, now, calm_us)
    cause = likely_cause(contributions)
    since = min(c.first_ts for c in contributions if c.sensor == head.sensor)
    text = f"Likely {cause.name}: {describe(head, since)}" if cause else describe(head, since)
    others = list(dict.fromkeys(sensor_name(c.sensor).lower() for c in contributions
                                if not c.secondary and c.sensor not in (head.sensor, "*")
                                and c.weight(now, calm_us) >= 0))
    if others:
        text += f" (also: {', '.join(others)})"
    odd = list(dict.fromkeys(sensor_name(c.sensor).lower() for c in contributions
                             if c.secondary and c.sensor not in (head.sensor, "*")
                             and c.weight(now, calm_us) >= 0))
    if odd:
        text += f"; unusual readings of {', '.join(odd)} meanwhile, likely from the same cause"
    return text


def action(contributions: list[Contribution], now: int, calm_us: float) -> str | None:
    """The registry's recommended actions of the sensors involved (the headline's first),
    after the likely cause when a fault signature matches."""
    head = headline(contributions, now, calm_us)
    actions = [c.action for c in [head, *contributions] if c.action]
    text = " ".join(dict.fromkeys(actions))
    cause = likely_cause(contributions)
    if cause:
        text = f"Likely cause: {cause.name} ({cause.why}). {text}".rstrip()
    return text or None


def evidence(contributions: list[Contribution], now: int, calm_us: float) -> dict[str, float]:
    """The headline's numbers as they are (``value``, ``limit``, ``hours_to_limit``, ...) and
    every sensor's contribution under ``<sensor>.<rule>.<name>`` (rule: limit, trend, anomaly,
    stuck); detector scores stay here, out of the title."""
    head = headline(contributions, now, calm_us)
    out = dict(head.evidence)
    for c in contributions:
        if c.sensor == "*":
            continue  # a machine- or gateway-wide finding: its numbers are the headline's
        prefix = f"{c.sensor}.{_ALIAS.get(c.rule, c.rule)}."
        out.update({prefix + k: v for k, v in c.evidence.items()})
    return out


def sensors(contributions: list[Contribution], now: int, calm_us: float) -> list[str]:
    head = headline(contributions, now, calm_us)
    names: list[str] = []
    for c in [head, *contributions]:
        for s in c.sensors or (c.sensor,):
            if s not in names:
                names.append(s)
    return names
