"""OpenTelemetry tracing with trace context carried in Kafka headers.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans go out over OTLP/HTTP; otherwise they are
written one JSON object a line to ``$PLANTSTREAM_HOME/traces/<service>.jsonl`` so a trace
can be followed across services on one machine without a collector.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Tracer

from plantstream.settings import Settings

_setup_done = False


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a local file, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(json.dumps({
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
                "name": s.name,
                "service": s.resource.attributes.get("service.name"),
                "start": s.start_time,
                "end": s.end_time,
                "attributes": dict(s.attributes or {}),
            }, default=str))
        with self._lock, self.path.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def setup_tracing(service: str, settings: Settings) -> Tracer:
    """Install the tracer provider for this process (once) and return the service's tracer."""
    global _setup_done
    if not _setup_done:
        provider = TracerProvider(resource=Resource.create({
            "service.name": service, "service.instance.id": settings.instance}))
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: SpanExporter = OTLPSpanExporter()
        else:
            exporter = JsonLinesSpanExporter(settings.home / "traces" / f"{service}.jsonl")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        trace.set_tracer_provider(provider)
        _setup_done = True
    return trace.get_tracer(f"plantstream.{service}")


def inject_headers(headers: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    """Add the current trace context (W3C traceparent) to Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    out = list(headers or [])
    out.extend((k, v.encode()) for k, v in carrier.items())
    return out


def extract_context(headers: Sequence[tuple[str, bytes | None]] | None):  # noqa: ANN201
    """The trace context carried by a Kafka message's headers (or an empty one)."""
    carrier = {k: v.decode("latin-1") for k, v in (headers or []) if v is not None}
    return propagate.extract(carrier)


def flush_tracing() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
