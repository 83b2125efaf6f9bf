"""Entry point of ``python -m maintenance``: settings, logging, tracing, metrics, the asset
registry follower, then the faust worker (SIGTERM stops it cleanly)."""

from __future__ import annotations

import sys

from faust.worker import Worker

from maintenance.app import Runtime, build_app
from maintenance.lifecycle import Escalation, Policy
from maintenance.machine import RuleSet
from maintenance.rules import ClockSkew, LimitRule, NoData, PersistentAnomaly, StuckSensor, TrendToLimit
from plantstream.assets import AssetFollower
from plantstream.avro import AvroCodec
from plantstream.consumerlag import watch_faust_lag
from plantstream.errors import PlantstreamError
from plantstream.kafka import check_broker, create_topics
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.notify import NotifyConfig, load_notify_config
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import MAINTENANCE_MACHINES


def rules_from(settings: Settings) -> RuleSet:
    horizon = settings.trend_horizon_hours
    return RuleSet(
        reading_rules=(LimitRule(hold_s=2 * settings.alert_quiet_seconds),
                       TrendToLimit(horizon_h=horizon, critical_horizon_h=horizon / 6),
                       StuckSensor(), NoData(max_silence_s=settings.no_data_seconds),
                       ClockSkew(max_skew_s=settings.clock_skew_seconds)),
        anomaly_rule=PersistentAnomaly(),
    )


def policy_from(settings: Settings, notify: NotifyConfig) -> Policy:
    escalation = {sev: Escalation(after_s=e["after_s"], max_level=int(e["max_level"]),
                                  remind_every_s=e["remind_every_s"], raise_after_s=e["raise_after_s"])
                  for sev, e in notify.escalation.items()}
    return Policy(quiet_s=settings.alert_quiet_seconds, update_every_s=settings.alert_update_seconds,
                  escalation=escalation)


def main() -> None:
    settings = Settings.from_env()
    log = setup_logging("maintenance", settings.log_level, settings.log_format)
    try:
        tracer = setup_tracing("maintenance", settings)
        check_broker(settings)
        create_topics(settings, [MAINTENANCE_MACHINES])  # the changelog, if the catalog was created earlier
        notify = load_notify_config(settings.notify_config)
        follower = AssetFollower(settings).start()
    except PlantstreamError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        sys.exit(2)
    serve(settings, "maintenance")
    rt = Runtime(registry=follower.registry, rules=rules_from(settings), policy=policy_from(settings, notify),
                 notify=notify, metrics=ServiceMetrics("maintenance"), codec=AvroCodec(), tracer=tracer)
    app = build_app(settings, rt)
    watch_faust_lag(app, rt.metrics)
    log.info("starting", extra={"app_id": app.conf.id, "routes": len(notify.routes),
                                "escalation": sorted(notify.escalation)})
    worker = Worker(app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False,
                    quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        follower.stop()
        flush_tracing()
