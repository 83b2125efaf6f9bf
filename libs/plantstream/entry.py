"""The start-up every registry-following processor service shares (ingest, validation):
settings, logging, tracing, metrics endpoint, the asset registry, then the transactional loop.
Written once here so a service's ``service.py`` only says what is its own."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.trace import Tracer

from plantstream.assets import AssetFollower, AssetRegistry
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import TopicSpec

ProcessorFactory = Callable[[Settings, AssetRegistry, Tracer, ServiceMetrics], Processor]


def run_registry_processor(service: str, source: TopicSpec, make: ProcessorFactory) -> None:
    """Run ``make(...)``'s processor on ``source`` in consumer group ``service`` until SIGTERM."""
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
                      [source.physical(settings)], service, stop=stop, metrics=metrics)
    finally:
        follower.stop()
        flush_tracing()
        log.info("stopped", extra={"records_in": metrics.records_in,
                                   "dead_letters": dict(metrics.dead_letters)})
