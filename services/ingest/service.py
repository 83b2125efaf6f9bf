"""Entry point: gateway.readings.<tenant> (and the operator's gateway.readings) -> readings.normalized
(the shared start-up is in plantstream.entry)."""

from __future__ import annotations

from ingest.processor import IngestProcessor
from plantstream.entry import ProcessorService
from plantstream.topics import GATEWAY_READINGS, TENANT_GATEWAY_READINGS

# Every tenant's gateway topic (by pattern: a new tenant's is found while running) and the
# operator's; the range assignor gives partition p of all of them to one copy (one dedup store).
SERVICE = ProcessorService("ingest", [TENANT_GATEWAY_READINGS, GATEWAY_READINGS], IngestProcessor)
main = SERVICE.main
