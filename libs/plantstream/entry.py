"""The start-up every registry-following processor service shares (ingest, validation,
anomaly, maintenance):
settings, logging, tracing, metrics endpoint, the asset registry, then the transactional loop.
Written once here so a service's ``service.py`` only says what is its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Tracer

from plantstream.assets import AssetFollower, AssetRegistry
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import TopicSpec

ProcessorFactory = Callable[[Settings, AssetRegistry, Tracer, ServiceMetrics], Processor]


def run_registry_processor(service: str, sources: TopicSpec | list[TopicSpec], make: ProcessorFactory,
                           **loop: Any) -> None:
    """Run ``make(...)``'s processor on ``sources`` in consumer group ``service`` until SIGTERM;
    ``loop`` goes to :func:`~plantstream.runner.run_processor` (batch size, max wait)."""
    specs = sources if isinstance(sources, list) else [sources]
    settings = Settings.from_env()
    log = setup_logging(service, settings.log_level, settings.log_format)
    tracer = setup_tracing(service, settings)
    serve(settings, service)
    stop = StopFlag().install()
    follower = AssetFollower(settings).start()
    metrics = ServiceMetrics(service)
    log.info("starting", extra={"machines": len(follower.registry)})
    try:
        run_processor(make(settings, follower.registry, tracer, metrics), settings,
                      [spec.physical(settings) for spec in specs], service, stop=stop, metrics=metrics,
                      **loop)
    finally:
        follower.stop()
        flush_tracing()
        log.info("stopped", extra={"records_in": metrics.records_in,
                                   "dead_letters": dict(metrics.dead_letters)})
