"""Everything the service knows about one machine, kept as one value in maintenance's
PartitionStore: rule instances per sensor and the alert book. The store commits it in the
same transaction as the alert revisions it produced and the input offsets, so redelivery
cannot apply an input twice; the snapshot is written with the safe state codec
(:func:`state_codec`), never pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from maintenance.lifecycle import AlertBook, Emission, Policy
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
from plantstream.statecodec import StateCodec


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

    @property
    def ids(self) -> tuple[str, str, str]:
        return self.book.tenant, self.book.site, self.book.machine

    def on_readings(self, batch: dict[str, Any], specs: dict[str, dict[str, Any]], rules: RuleSet,
                    now: int, policy: Policy) -> list[Emission]:
        findings: list[Finding] = []
        for r in batch["readings"]:
            if not math.isfinite(r["value"]):
                continue  # validation dead-letters these; never let one poison a rule window
            reading = Reading(r["sensor"], r["ts"], r["value"], batch["ingest_time"],
                              specs.get(r["sensor"]), arrived=now, sent_at=batch.get("sent_at"))
            sensor_rules = self.reading_rules.get(r["sensor"])
            if sensor_rules is None:
                sensor_rules = self.reading_rules[r["sensor"]] = [p.clone() for p in rules.reading_rules]
            for rule in sensor_rules:
                findings.extend(rule.update(reading))
        return self._apply(findings, now, policy)

    def on_anomaly(self, event: dict[str, Any], rules: RuleSet, now: int, policy: Policy) -> list[Emission]:
        contributions = event.get("contributions") or []
        top = max(contributions, key=lambda c: c["share"], default=None)
        anomaly = Anomaly(event["event_id"], top["sensor"] if top else "*", event["ts"], event["score"],
                          event["threshold"], top["share"] if top else 1.0, top.get("value") if top else None)
        rule = self.anomaly_rules.get(anomaly.sensor)
        if rule is None:
            rule = self.anomaly_rules[anomaly.sensor] = rules.anomaly_rule.clone()
        return self._apply(rule.update(anomaly), now, policy)

    def on_command(self, cmd: dict[str, Any], now: int) -> list[Emission]:
        """Apply a command; raises plantstream.alertstate.InvalidCommand when it cannot be."""
        emission = self.book.command(cmd, now)
        return [emission] if emission else []

    def tick(self, now: int, policy: Policy) -> list[Emission]:
        findings = [f for rules in self.reading_rules.values() for rule in rules for f in rule.check(now)]
        return self._apply(findings, now, policy) + self.book.tick(now, policy)

    def _apply(self, findings: list[Finding], now: int, policy: Policy) -> list[Emission]:
        out: list[Emission] = []
        for f in findings:
            out.extend(self.book.apply(f, now, policy))
        return out


@cache
def state_codec() -> StateCodec:
    """The safe codec of a machine's state: the only classes a snapshot may rebuild."""
    from maintenance import lifecycle, robust
    from maintenance.rules import base, clock_skew, limits, no_data, persistent_anomaly, stuck, trend

    return StateCodec([
        MachineState, lifecycle.AlertBook, lifecycle.Alert, base.Reading, base.Anomaly, base.Finding,
        robust.SlopeFit, robust.TimeToLimit, limits._Breach, limits.LimitRule, trend.TrendToLimit,
        stuck.StuckSensor, no_data.NoData, clock_skew.ClockSkew, persistent_anomaly.PersistentAnomaly])
