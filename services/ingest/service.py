"""Entry point: gateway.readings -> readings.normalized (the shared start-up is in plantstream.entry)."""

from __future__ import annotations

from ingest.processor import IngestProcessor
from plantstream.entry import ProcessorService
from plantstream.topics import GATEWAY_READINGS

SERVICE = ProcessorService("ingest", [GATEWAY_READINGS], IngestProcessor)
main = SERVICE.main
