"""Entry point of ``python -m notifier``: settings, logging, tracing, metrics, topics, the
notification config, then the faust worker (SIGTERM stops it cleanly)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust

from notifier.app import SERVICE, Runtime, build_app
from plantstream.avro import AvroCodec
from plantstream.consumerlag import watch_faust_lag
from plantstream.errors import PlantstreamError
from plantstream.kafka import check_broker, create_topics
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.notify import load_notify_config
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import ALERTS, NOTIFICATIONS, NOTIFIER_OPEN_ALERTS, READINGS_REJECTED


class _Worker(faust.Worker):
    """faust's worker, logging through plantstream's JSON logging instead of its own."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        self._settings = settings
        super().__init__(*args, **kwargs)
        self.spinner = None  # terminal escape codes would corrupt JSON log lines

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        setup_logging(SERVICE, self._settings.log_level, self._settings.log_format)


def main() -> None:
    s = Settings.from_env()
    log = setup_logging(SERVICE, s.log_level, s.log_format)
    try:
        check_broker(s)
        # Idempotent: normally done by `plantstream topics create`; faust may not declare topics.
        create_topics(s, [ALERTS, NOTIFICATIONS, READINGS_REJECTED, NOTIFIER_OPEN_ALERTS])
        notify = load_notify_config(s.notify_config)
        tracer = setup_tracing(SERVICE, s)
    except PlantstreamError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        sys.exit(2)
    serve(s, SERVICE)
    rt = Runtime(notify=notify, metrics=ServiceMetrics(SERVICE), codec=AvroCodec(), tracer=tracer)
    app = build_app(s, rt)
    watch_faust_lag(app, rt.metrics)
    log.info("starting", extra={"app_id": app.conf.id, "routes": len(notify.routes),
                                "escalation": sorted(notify.escalation), "group_wait_s": notify.group_wait_s,
                                "quiet_hours": notify.quiet_hours is not None})
    worker = _Worker(app, settings=s, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        flush_tracing()
