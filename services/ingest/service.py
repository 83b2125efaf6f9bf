"""Entry point: gateway.readings -> readings.normalized (the shared start-up is in plantstream.entry)."""

from __future__ import annotations

from ingest.processor import IngestProcessor
from plantstream.entry import run_registry_processor
from plantstream.topics import GATEWAY_READINGS


def main() -> None:
    run_registry_processor("ingest", GATEWAY_READINGS, IngestProcessor)
