"""Entry point: settings, logging, tracing, metrics, the asset registry, then the loop."""

from __future__ import annotations

from plantstream.assets import AssetFollower
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import READINGS_NORMALIZED
from validation.processor import ValidationProcessor


def main() -> None:
    settings = Settings.from_env()
    log = setup_logging("validation", settings.log_level, settings.log_format)
    tracer = setup_tracing("validation", settings)
    serve(settings, "validation")
    stop = StopFlag().install()
    follower = AssetFollower(settings).start()
    metrics = ServiceMetrics("validation")
    log.info("starting", extra={"machines": len(follower.registry)})
    try:
        run_processor(ValidationProcessor(settings, follower.registry, tracer, metrics), settings,
                      [READINGS_NORMALIZED.physical(settings)], "validation", stop=stop, metrics=metrics)
    finally:
        follower.stop()
        flush_tracing()
        log.info("stopped", extra={"records_in": metrics.records_in,
                                   "dead_letters": dict(metrics.dead_letters)})
