"""OpenTelemetry tracing with trace context carried in Kafka headers.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans go out over OTLP/HTTP; otherwise they are
written one JSON object a line to ``$PLANTSTREAM_HOME/traces/<service>.jsonl`` so a trace
can be followed across services on one machine without a collector.

Every service opens one span per consumed message (:func:`message_span`), parented on the
W3C ``traceparent`` the message carries, and every record it produces inside that span
carries the span's own traceparent (:func:`inject_headers`), so one gateway batch is one
trace from the gateway to the archive. ``PLANTSTREAM_TRACES=off`` turns all of it into
no-ops (no spans, no headers), for a measurement without the cost.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.status import Status, StatusCode

from plantstream.readingbatch import peek_header
from plantstream.settings import Settings

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PROPAGATOR = TraceContextTextMapPropagator()
_setup_done = False
_enabled = True  # False after setup_tracing with PLANTSTREAM_TRACES=off

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


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
                "links": [f"{link.context.trace_id:032x}" for link in s.links],
            }, default=str))
        with self._lock, self.path.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def setup_tracing(service: str, settings: Settings) -> Tracer:
    """Install the tracer provider for this process (once) and return the service's tracer.

    With tracing off the tracer is a no-op and :func:`message_span` / :func:`inject_headers`
    do nothing at all."""
    global _setup_done, _enabled
    if not settings.traces:
        _enabled = False
        return trace.NoOpTracer()
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


def tracing_enabled() -> bool:
    return _enabled


def inject_headers(headers: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    """``headers`` plus the current trace context (W3C traceparent), if a span is current.

    Formats the header directly (what TraceContextTextMapPropagator writes, at a fraction of
    its cost: this runs for every record the platform produces)."""
    out = list(headers or [])
    if not _enabled:
        return out
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        out.append((TRACEPARENT, b"00-%032x-%016x-%02x" % (sc.trace_id, sc.span_id, sc.trace_flags)))
        if sc.trace_state:
            out.append((TRACESTATE, sc.trace_state.to_header().encode()))
    return out


def _carrier(headers: Headers) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    carrier = {}
    for k, v in items:
        if v is not None and k in (TRACEPARENT, TRACESTATE):
            carrier[k] = v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return carrier


def extract_context(headers: Headers) -> otel_context.Context:
    """The trace context carried by a Kafka message's headers (a list of pairs, as confluent
    and aiokafka give them, or a mapping); an empty context, i.e. a new trace, without one."""
    return _PROPAGATOR.extract(_carrier(headers))


def parent_context(headers: Headers) -> otel_context.Context:
    """:func:`extract_context` for the hot path: the same W3C parse without the propagator's
    layers (several µs a message); tested to agree with it."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    parent = None
    for k, v in items:
        if k == TRACESTATE:
            return extract_context(headers)  # rare here: the reference parser keeps the state
        if k == TRACEPARENT:
            parent = v
    if parent is None:
        return _EMPTY
    m = _TRACEPARENT_RE.match(parent.decode("latin-1") if isinstance(parent, bytes) else str(parent))
    if m is None or m[1] == "ff" or (m[1] == "00" and m[5]):
        return _EMPTY
    trace_id, span_id = int(m[2], 16), int(m[3], 16)
    if not (trace_id and span_id):
        return _EMPTY
    sc = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m[4], 16)))
    return trace.set_span_in_context(NonRecordingSpan(sc), _EMPTY)


_TRACEPARENT_RE = re.compile(r"^\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\s*$")


class _MessageSpan:
    """``start_as_current_span`` without its generator-based context managers (a third of a
    span's cost in the SDK), for one span per consumed message."""

    __slots__ = ("tracer", "name", "headers", "attributes", "span", "token")

    def __init__(self, tracer: Tracer, name: str, headers: Headers,
                 attributes: Mapping[str, Any] | None) -> None:
        self.tracer, self.name, self.headers, self.attributes = tracer, name, headers, attributes

    def __enter__(self) -> Span:
        self.span = self.tracer.start_span(self.name, context=parent_context(self.headers),
                                           kind=SpanKind.CONSUMER, attributes=self.attributes)
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        otel_context.detach(self.token)
        if exc is not None:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc}"))
        self.span.end()


def message_span(tracer: Tracer, name: str, headers: Headers,
                 attributes: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager:
    """A current span for one consumed message, child of the context in its headers (a new
    trace without one). Records produced inside it carry its traceparent via
    :func:`inject_headers`."""
    if not _enabled:
        return _NO_SPAN_CM
    return _MessageSpan(tracer, name, headers, attributes)


_EMPTY = otel_context.Context()
_NO_SPAN = NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
_NO_SPAN_CM = contextlib.nullcontext(_NO_SPAN)


@contextlib.contextmanager
def root_span(tracer: Tracer, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A new trace (e.g. a gateway batch); no-op with tracing off or not set up."""
    if not _enabled:
        yield _NO_SPAN
        return
    with tracer.start_as_current_span(name, context=otel_context.Context(), kind=SpanKind.PRODUCER,
                                      attributes=attributes) as span:
        yield span


def trace_written(name: str, messages: Sequence[Any], started_ns: int) -> None:
    """After a sink stored a batch: one span per message that carries a trace context, child
    of it, covering the batch's write (so the trace of a gateway batch ends in the archive).
    Messages without a traceparent cost nothing; with tracing not set up this returns at once."""
    if not (_enabled and _setup_done):
        return
    tracer = trace.get_tracer("plantstream.sink")
    n = len(messages)
    for m in messages:
        headers = m.headers()
        if not headers or not any(k == TRACEPARENT for k, _ in headers):
            continue
        attrs = kafka_attributes(m.topic(), m.partition(), m.offset())
        attrs.update(key_attributes(m.key()))
        attrs["plantstream.batch_messages"] = n
        span = tracer.start_span(name, context=parent_context(headers), kind=SpanKind.CONSUMER,
                                 attributes=attrs, start_time=started_ns)
        span.end()


def kafka_attributes(topic: str | None, partition: int | None, offset: int | None) -> dict[str, Any]:
    return {"kafka.topic": topic or "", "kafka.partition": -1 if partition is None else partition,
            "kafka.offset": -1 if offset is None else offset}


def key_attributes(key: bytes | None) -> dict[str, str]:
    """tenant/site/machine from a ``machine_key`` (``b"tenant/site/machine"``)."""
    parts = (key or b"").decode("utf-8", "replace").split("/")
    if len(parts) != 3:
        return {}
    return {"plantstream.tenant": parts[0], "plantstream.site": parts[1], "plantstream.machine": parts[2]}


def batch_attributes(value: bytes | None) -> dict[str, Any]:
    """tenant, site, machine, batch id and readings count of a reading_batch (cheap header peek)."""
    head = peek_header(value or b"")
    if head is None:
        return {}
    batch_id, tenant, site, machine, readings = head
    return {"plantstream.tenant": tenant, "plantstream.site": site, "plantstream.machine": machine,
            "plantstream.batch_id": batch_id, "plantstream.readings": readings}


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (no-op without one)."""
    if _enabled and attributes:
        trace.get_current_span().set_attributes(attributes)


def flush_tracing() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
