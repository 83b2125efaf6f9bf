"""Entry point: settings, logging, tracing, metrics, the asset registry, then the loop."""

from __future__ import annotations

from ingest.processor import IngestProcessor
from plantstream.assets import AssetFollower
from plantstream.logs import setup_logging
from plantstream.metrics import ServiceMetrics, serve
from plantstream.runner import StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
from plantstream.topics import GATEWAY_READINGS


def main() -> None:
    settings = Settings.from_env()
    log = setup_logging("ingest", settings.log_level, settings.log_format)
    tracer = setup_tracing("ingest", settings)
    serve(settings, "ingest")
    stop = StopFlag().install()
    follower = AssetFollower(settings).start()
    metrics = ServiceMetrics("ingest")
    log.info("starting", extra={"machines": len(follower.registry)})
    try:
        run_processor(IngestProcessor(settings, follower.registry, tracer, metrics), settings,
                      [GATEWAY_READINGS.physical(settings)], "ingest", stop=stop, metrics=metrics)
    finally:
        follower.stop()
        flush_tracing()
        log.info("stopped", extra={"records_in": metrics.records_in,
                                   "dead_letters": dict(metrics.dead_letters)})
