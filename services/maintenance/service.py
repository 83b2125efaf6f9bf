"""Entry point of ``python -m maintenance``: readings.valid, anomalies and alert.commands ->
alerts on the transactional loop (the shared start-up is in plantstream.entry; the logic in
maintenance.processor, maintenance.machine and the rules)."""

from __future__ import annotations

from opentelemetry.trace import Tracer

from maintenance.lifecycle import Policy
from maintenance.machine import RuleSet
from maintenance.processor import SOURCES, MaintenanceProcessor
from maintenance.rules import ClockSkew, LimitRule, NoData, PersistentAnomaly, StuckSensor, TrendToLimit
from plantstream.assets import AssetRegistry
from plantstream.entry import ProcessorService
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings


def rules_from(settings: Settings) -> RuleSet:
    horizon = settings.trend_horizon_hours
    return RuleSet(
        reading_rules=(LimitRule(hold_s=2 * settings.alert_quiet_seconds),
                       TrendToLimit(horizon_h=horizon, critical_horizon_h=horizon / 6),
                       StuckSensor(), NoData(max_silence_s=settings.no_data_seconds),
                       ClockSkew(max_skew_s=settings.clock_skew_seconds)),
        anomaly_rule=PersistentAnomaly(),
    )


def policy_from(settings: Settings) -> Policy:
    return Policy(quiet_s=settings.alert_quiet_seconds, update_every_s=settings.alert_update_seconds)


def make_processor(settings: Settings, registry: AssetRegistry, tracer: Tracer,
                   metrics: ServiceMetrics) -> MaintenanceProcessor:
    return MaintenanceProcessor(settings, registry, tracer, metrics, rules=rules_from(settings),
                                policy=policy_from(settings))


SERVICE = ProcessorService("maintenance", SOURCES, make_processor, batch_size=2000, batched=True)
main = SERVICE.main
