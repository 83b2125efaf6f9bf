"""Everything the service knows about one machine, kept as one value in maintenance's
PartitionStore: rule instances per sensor (per gateway for clock skew), each sensor's learned
normal (for plain-words evidence), and the alert book.

A stopped machine (its speed far below normal for ``STOPPED_READINGS`` readings in a row) and
the ``SETTLE_US`` after it restarts are a mode of operation, and so is a temperature still
warming up to its normal band after the stop (up to ``MAX_SETTLE_US`` after it; for that
sensor only): the anomaly detector's findings then are not alerts (state-based alarm
suppression, as ISA-18.2 calls it), and the normals do not learn from them. Limits, trends
and sensor faults still alert. The store commits it in the
same transaction as the alert revisions it produced and the input offsets, so redelivery
cannot apply an input twice; the snapshot is written with the safe state codec
(:func:`state_codec`), never pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from maintenance.lifecycle import AlertBook, Emission, Policy
from maintenance.problems import Baseline
from maintenance.rules import (
    AlertRule,
    Anomaly,
    ClockSkew,
    Finding,
    LimitRule,
    NoData,
    PersistentAnomaly,
    Reading,
    StuckSensor,
    TrendToLimit,
)
from maintenance.rules.persistent_anomaly import SENSOR_FAULT_MODELS
from maintenance.words import duration, sensor_name, value_with_unit
from plantstream.statecodec import StateCodec

Specs = dict[str, dict[str, Any]]
SPEED_UNITS = ("rpm", "1/min", "Hz")
STOPPED_SHARE = 0.1  # a speed below this share of its normal means the machine is stopped...
STOPPED_READINGS = 5  # ...when this many readings in a row say so (one spike is not a stop)
SETTLE_US = 600_000_000  # after a stop, temperatures and loads need this long to settle...
MAX_SETTLE_US = 2_700_000_000  # ...or, while a temperature is still warming up to normal, up to this
TEMPERATURE_UNITS = ("degC", "°C", "K", "degF", "°F")
COLD_SDS = 2.0  # a temperature this many normal sd below its normal mean is still warming up
COLD_SETTLE_US = 300_000_000  # settling lasts this long after the last still-cold reading


@dataclass(frozen=True, slots=True)
class SensorReadings:
    """One reading batch as the rules read it: columns, not a dict per reading (the processor
    builds it from the platform's one reading_batch decoder, :mod:`plantstream.readingbatch`)."""

    tenant: str
    site: str
    machine: str
    gateway: str
    ingest_time: int
    sent_at: int | None
    sensors: list[str]
    ts: list[int]
    values: list[float]


@dataclass(frozen=True)
class RuleSet:
    """Prototype rules, cloned for every sensor the first time it is seen."""

    reading_rules: tuple[AlertRule, ...] = field(default_factory=lambda: (
        LimitRule(), TrendToLimit(), StuckSensor(), NoData(), ClockSkew()))
    anomaly_rule: AlertRule = field(default_factory=PersistentAnomaly)


class MachineState:
    def __init__(self, tenant: str, site: str, machine: str, partition: int) -> None:
        self.partition = partition  # the input partition whose store holds this state
        self.book = AlertBook(tenant, site, machine)
        self.reading_rules: dict[str, list[AlertRule]] = {}
        self.anomaly_rules: dict[str, AlertRule] = {}
        self.gateway_rules: dict[str, list[AlertRule]] = {}
        self.gateway_sensors: dict[str, list[str]] = {}
        self.baselines: dict[str, Baseline] = {}
        self.units: dict[str, str] = {}
        self.stopped_until = 0  # sample time until which the machine counts as stopped or settling
        self.slow_readings = 0  # consecutive speed readings far below normal
        self.settle_cap = 0  # sample time the settling after the last stop may last until
        self.warming: dict[str, int] = {}  # temperature sensor -> sample time it counts as warming up until

    def __setstate__(self, state: dict[str, Any]) -> None:
        """State stored before per-gateway rules and baselines decodes with none (they start
        learning); its per-sensor clock-skew rules are dropped for one per gateway."""
        self.__dict__.update({"gateway_rules": {}, "gateway_sensors": {}, "baselines": {}, "units": {},
                              "stopped_until": 0, "slow_readings": 0, "settle_cap": 0, "warming": {},
                              **state})
        self.reading_rules = {s: [r for r in rules if r.scope == "sensor"]
                              for s, rules in self.reading_rules.items()}

    @property
    def ids(self) -> tuple[str, str, str]:
        return self.book.tenant, self.book.site, self.book.machine

    def on_readings(self, batch: SensorReadings, specs: Specs, rules: RuleSet,
                    now: int, policy: Policy) -> list[Emission]:
        findings: list[Finding] = []
        gateway = batch.gateway or ""
        learn = not self.book.active("condition")
        gw_rules = self.gateway_rules.get(gateway)
        if gw_rules is None:
            gw_rules = self.gateway_rules[gateway] = [p.clone() for p in rules.reading_rules
                                                      if p.scope == "gateway"]
        gw_sensors = self.gateway_sensors.setdefault(gateway, [])
        ingest_time, sent_at = batch.ingest_time, batch.sent_at
        for sensor, ts, value in zip(batch.sensors, batch.ts, batch.values, strict=True):
            if not math.isfinite(value):
                continue  # validation dead-letters these; never let one poison a rule window
            spec = specs.get(sensor)
            reading = Reading(sensor, ts, value, ingest_time, spec, arrived=now, sent_at=sent_at,
                              gateway=gateway)
            sensor_rules = self.reading_rules.get(sensor)
            if sensor_rules is None:
                sensor_rules = self.reading_rules[sensor] = [p.clone() for p in rules.reading_rules
                                                             if p.scope == "sensor"]
            if sensor not in gw_sensors:
                gw_sensors.append(sensor)
            if spec and spec.get("unit"):
                self.units[sensor] = spec["unit"]
            for rule in sensor_rules:
                findings.extend(rule.update(reading))
            for rule in gw_rules:
                found = rule.update(reading)
                findings.extend(replace(f, sensor="*", sensors=tuple(gw_sensors)) for f in found)
            base = self.baselines.get(sensor) or self.baselines.setdefault(sensor, Baseline())
            slow = self._slow(sensor, value, base)
            if slow is not None:
                self.slow_readings = self.slow_readings + 1 if slow else 0
                if self.slow_readings >= STOPPED_READINGS:
                    self.stopped_until = max(self.stopped_until, ts + SETTLE_US)
                    self.settle_cap = ts + MAX_SETTLE_US
            elif (ts <= max(self.stopped_until, self.warming.get(sensor, 0))
                  and ts < self.settle_cap and self._cold(sensor, value, base)):
                self.warming[sensor] = min(ts + COLD_SETTLE_US, self.settle_cap)
            settled = ts > self.stopped_until and ts > self.warming.get(sensor, 0)
            if learn and not self.slow_readings and settled:  # not while stopping or settling
                base.learn(value)
        return self._apply(findings, now, policy)

    def on_anomaly(self, event: dict[str, Any], rules: RuleSet, now: int, policy: Policy) -> list[Emission]:
        contributions = event.get("contributions") or []
        if event.get("kind") == "rebaseline":  # not an anomaly: the machine's normal moved
            return self.book.note_condition(self._operating_point(contributions), now)
        top = max(contributions, key=lambda c: c["share"], default=None)
        anomaly = Anomaly(event["event_id"], top["sensor"] if top else "*", event["ts"], event["score"],
                          event["threshold"], top["share"] if top else 1.0, top.get("value") if top else None,
                          model=event.get("model") or "", window_start=event.get("window_start") or 0)
        rule = self.anomaly_rules.get(anomaly.sensor)
        if rule is None:
            rule = self.anomaly_rules[anomaly.sensor] = rules.anomaly_rule.clone()
        found = rule.update(anomaly)
        settling = anomaly.ts <= self.stopped_until or anomaly.ts <= self.warming.get(anomaly.sensor, 0)
        if settling and anomaly.model not in SENSOR_FAULT_MODELS:
            return []  # a stopped or restarting machine is a mode of operation, not a fault
        return self._apply(found, now, policy)

    def _operating_point(self, moved: list[dict[str, Any]]) -> str:
        """The note for a re-baseline: which sensors settled where."""
        levels = ", ".join(f"{sensor_name(c['sensor']).lower()} "
                           f"{value_with_unit(c['value'], self.units.get(c['sensor'], ''))}"
                           for c in moved[:3] if c.get("value") is not None)
        return ("operating point changed: the machine has settled at a new steady level"
                + (f" ({levels})" if levels else "")
                + "; the anomaly model now learns it as normal")

    def on_command(self, cmd: dict[str, Any], now: int) -> list[Emission]:
        """Apply a command; raises plantstream.alertstate.InvalidCommand when it cannot be."""
        emission = self.book.command(cmd, now)
        return [emission] if emission else []

    def tick(self, now: int, policy: Policy, since: int = 0) -> list[Emission]:
        """Time-driven findings and alert updates; ``since``: when the service began listening
        to this machine's partition (a silence is counted from then at the latest)."""
        findings = [f for rules in self.reading_rules.values() for rule in rules
                    for f in rule.check(now, since)]
        silent = [f for f in findings if f.rule == "no_data"]
        if silent:
            findings = [f for f in findings if f.rule != "no_data"] + [self._silence(silent)]
        return self._apply(findings, now, policy) + self.book.tick(now, policy)

    def _slow(self, sensor: str, value: float, base: Baseline) -> bool | None:
        """For a speed reading, whether it is far below normal (the machine standing still);
        None for other sensors or before the speed's normal is known."""
        unit = self.units.get(sensor, "")
        if not (unit in SPEED_UNITS or sensor == "speed") or not base.ready or base.mean <= 0:
            return None
        return value < STOPPED_SHARE * base.mean

    def _cold(self, sensor: str, value: float, base: Baseline) -> bool:
        """A temperature still below its running normal band (warming up after a stop)."""
        return (self.units.get(sensor, "") in TEMPERATURE_UNITS and base.ready
                and value < base.mean - COLD_SDS * base.sd)

    def _silence(self, silent: list[Finding]) -> Finding:
        """The no-data findings of a machine's sensors as one: the machine (or its gateway)
        when every sensor is silent, else the silent sensors by name."""
        names = [f.sensor for f in silent]
        known = len(self.reading_rules)
        quiet = min(f.evidence["silence_s"] for f in silent)
        gateways = [g for g, sensors in self.gateway_sensors.items() if g and set(sensors) <= set(names)]
        if len(names) == known:
            who = f"gateway {gateways[0]}" if len(gateways) == 1 else "this machine"
            title = f"No data from {who}: all {known} sensors silent for {duration(quiet)}"
        else:
            listed = ", ".join(sensor_name(n).lower() for n in names)
            title = f"No data from {len(names)} of {known} sensors ({listed}) for {duration(quiet)}"
        first = silent[0]
        evidence = {"silence_s": quiet, "silent_sensors": float(len(names)), "sensors": float(known),
                    "last_ts_s": max(f.evidence["last_ts_s"] for f in silent)}
        return Finding("no_data", "*", "warning", title, first.ts, evidence, action=first.action,
                       sensors=tuple(names))

    def _apply(self, findings: list[Finding], now: int, policy: Policy) -> list[Emission]:
        out: list[Emission] = []
        for f in findings:
            out.extend(self.book.apply(self._normal(f), now, policy, self.units.get(f.sensor, "")))
        return out

    def _normal(self, f: Finding) -> Finding:
        """The finding with its sensor's learned normal in the evidence (normal_mean, normal_sd)."""
        base = self.baselines.get(f.sensor)
        if base is None or not base.ready or "value" not in f.evidence:
            return f
        return replace(f, evidence={**f.evidence, "normal_mean": base.mean, "normal_sd": base.sd})


@cache
def state_codec() -> StateCodec:
    """The safe codec of a machine's state: the only classes a snapshot may rebuild."""
    from maintenance import lifecycle, problems, robust
    from maintenance.rules import base, clock_skew, limits, no_data, persistent_anomaly, stuck, trend

    return StateCodec([
        MachineState, lifecycle.AlertBook, lifecycle.Alert, problems.Contribution, problems.Baseline,
        base.Reading, base.Anomaly, base.Finding,
        robust.SlopeFit, robust.TimeToLimit, limits._Breach, limits.LimitRule, trend.TrendToLimit,
        stuck.StuckSensor, no_data.NoData, clock_skew.ClockSkew, persistent_anomaly.PersistentAnomaly])
