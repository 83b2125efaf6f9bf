"""Entry point of the anomaly service: settings, logging, metrics, topics, assets, faust worker.

Logic lives in ``anomaly.scorer`` (per-message scoring) and ``anomaly.app`` (the faust app).
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from anomaly.app import build_app, report_memory
from anomaly.config import detector_factory, scorer_config
from anomaly.scorer import Scorer
from plantstream.assets import AssetFollower
from plantstream.consumerlag import watch_faust_lag
from plantstream.deadletter import DeadLetters
from plantstream.kafka import check_broker, create_topics
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import ANOMALIES, ANOMALY_MODELS, ASSETS, READINGS_REJECTED, READINGS_VALID

SERVICE = "anomaly"


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
    check_broker(s)
    # Idempotent: normally done by `plantstream topics create`; faust may not declare topics.
    create_topics(s, [READINGS_VALID, ANOMALIES, READINGS_REJECTED, ANOMALY_MODELS, ASSETS])
    tracer = setup_tracing(SERVICE, s)
    serve(s, SERVICE)
    follower = AssetFollower(s).start()
    metrics = ServiceMetrics(SERVICE)
    scorer = Scorer(detector_factory(s), scorer_config(s), DeadLetters(s, SERVICE, metrics),
                    READINGS_VALID.physical(s), registry=follower.registry)
    app = build_app(s, scorer, metrics, tracer)
    watch_faust_lag(app, metrics)
    log.info("anomaly service starting", extra={
        "model": scorer.model, "model_version": scorer.model_version, "warmup": s.anomaly_warmup,
        "learn": s.anomaly_learn, "machines_in_registry": len(follower.registry)})
    worker = _Worker(app, settings=s, loglevel=s.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        report_memory(scorer)
        follower.stop()
        flush_tracing()
