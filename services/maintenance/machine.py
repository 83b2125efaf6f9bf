"""Everything the service knows about one machine, kept as one value in the faust table:
rule instances per sensor, the alert book, and the last input offset per topic.

Why the offsets: faust reads at least once, so after a crash a batch can come again; the
machine remembers the highest offset it applied per topic and skips anything not newer,
which makes state updates (and so alert revisions) idempotent under redelivery.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class RuleSet:
    """Prototype rules, cloned for every sensor the first time it is seen."""

    reading_rules: tuple[AlertRule, ...] = field(default_factory=lambda: (
        LimitRule(), TrendToLimit(), StuckSensor(), NoData(), ClockSkew()))
    anomaly_rule: AlertRule = field(default_factory=PersistentAnomaly)


class MachineState:
    def __init__(self, tenant: str, site: str, machine: str, partition: int) -> None:
        self.partition = partition  # outputs and changelog go to the partition the inputs use
        self.book = AlertBook(tenant, site, machine)
        self.offsets: dict[str, int] = {}
        self.reading_rules: dict[str, list[AlertRule]] = {}
        self.anomaly_rules: dict[str, AlertRule] = {}

    @property
    def ids(self) -> tuple[str, str, str]:
        return self.book.tenant, self.book.site, self.book.machine

    def fresh(self, topic: str, offset: int) -> bool:
        """True (and remembered) if this input offset was not applied before."""
        if offset <= self.offsets.get(topic, -1):
            return False
        self.offsets[topic] = offset
        return True

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

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> MachineState:
        """Restore from the table (our own changelog: a trusted source for pickle)."""
        state = pickle.loads(data)
        if not isinstance(state, MachineState):
            raise TypeError(f"table value holds {type(state).__name__}, not MachineState")
        return state
