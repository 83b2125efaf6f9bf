"""Trace context in Kafka headers (pure logic, no broker): inject/extract round trips, the
hot-path traceparent parser agrees with OpenTelemetry's reference propagator, one span per
message parented on its headers, span attributes from a reading batch's header, the JSON-lines
exporter, PLANTSTREAM_TRACES=off, and the settings that switch tracing and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from plantstream.errors import ConfigError, PlantstreamError
from plantstream.readingbatch import encode_readings, peek_header, string_bytes
from plantstream.settings import METRICS_PORT_AUTO, Settings
from plantstream.supervisor import metrics_port_for
from plantstream.telemetry import (
    JsonLinesSpanExporter,
    batch_attributes,
    extract_context,
    inject_headers,
    key_attributes,
    message_span,
    parent_context,
)

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TP = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


@pytest.fixture
def spans() -> tuple[trace.Tracer, InMemorySpanExporter]:
    """A tracer of its own (not the process-wide provider), recording into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def ctx_of(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


def test_inject_adds_the_current_span_and_keeps_other_headers(spans: tuple) -> None:
    tracer, _ = spans
    reference: dict[str, str] = {}
    with tracer.start_as_current_span("produce") as span:
        headers = inject_headers([("content-type", b"x")])
        TraceContextTextMapPropagator().inject(reference)
    sc = span.get_span_context()
    assert headers == [("content-type", b"x"), ("traceparent", reference["traceparent"].encode())]
    assert reference["traceparent"].startswith(f"00-{sc.trace_id:032x}-{sc.span_id:016x}-")
    back = ctx_of(extract_context(headers))
    assert (back.trace_id, back.span_id, back.is_remote) == (sc.trace_id, sc.span_id, True)


def test_inject_without_a_current_span_adds_nothing() -> None:
    assert inject_headers() == []
    assert inject_headers([("gateway", b"gw-1")]) == [("gateway", b"gw-1")]


@pytest.mark.parametrize("value", [
    TP, TP.encode(), f"  {TP} ", TP.upper(), TP.replace("-01", "-00"),
    f"ff-{TRACE_ID:032x}-{SPAN_ID:016x}-01", f"00-{0:032x}-{SPAN_ID:016x}-01",
    f"00-{TRACE_ID:032x}-{0:016x}-01", TP + "-extra", f"01-{TRACE_ID:032x}-{SPAN_ID:016x}-01-later",
    "00-short-abc-01", "", "not a traceparent", b"\xff\xfe",
])
def test_fast_parser_agrees_with_the_reference_propagator(value: str | bytes) -> None:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    reference = ctx_of(TraceContextTextMapPropagator().extract({"traceparent": text}))
    fast = ctx_of(parent_context([("traceparent", value)]))
    assert (fast.is_valid, fast.trace_id, fast.span_id, fast.trace_flags) == \
        (reference.is_valid, reference.trace_id, reference.span_id, reference.trace_flags)


def test_headers_as_mapping_with_tracestate_keep_the_state() -> None:
    sc = ctx_of(parent_context({"traceparent": TP, "tracestate": "vendor=abc"}))
    assert (sc.trace_id, sc.span_id) == (TRACE_ID, SPAN_ID)
    assert sc.trace_state.get("vendor") == "abc"


def test_message_span_is_a_child_of_the_message_and_its_outputs_carry_it(spans: tuple) -> None:
    tracer, exporter = spans
    with message_span(tracer, "svc.batch", [("content-type", b"x"), ("traceparent", TP.encode())],
                      {"kafka.offset": 7}) as span:
        out = inject_headers()
    (done,) = exporter.get_finished_spans()
    assert done.context.trace_id == TRACE_ID and done.parent.span_id == SPAN_ID
    assert done.kind == trace.SpanKind.CONSUMER and done.attributes["kafka.offset"] == 7
    assert out[0][1].startswith(f"00-{TRACE_ID:032x}-{span.get_span_context().span_id:016x}-".encode())
    assert len(out) == 1 and out[0][0] == "traceparent"
    assert not trace.get_current_span().get_span_context().is_valid  # detached afterwards


def test_a_message_without_traceparent_starts_a_new_trace(spans: tuple) -> None:
    tracer, exporter = spans
    with tracer.start_as_current_span("unrelated outer"):  # must not become the parent
        with message_span(tracer, "svc.batch", [("content-type", b"x")]):
            pass
        with message_span(tracer, "svc.batch", [("traceparent", b"garbage")]):
            pass
    first, second, outer = exporter.get_finished_spans()
    assert first.parent is None and second.parent is None
    assert len({first.context.trace_id, second.context.trace_id, outer.context.trace_id}) == 3


def test_an_exception_in_the_span_is_recorded_and_raised(spans: tuple) -> None:
    tracer, exporter = spans
    with pytest.raises(ValueError, match="boom"):
        with message_span(tracer, "svc.batch", None):
            raise ValueError("boom")
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code == StatusCode.ERROR
    assert [e.name for e in done.events] == ["exception"]


def test_batch_attributes_come_from_the_reading_batch_header() -> None:
    tail = string_bytes("degC") + b"\x80\x03"  # quality 192
    value = encode_readings("b-17", "acme", "plant1", "press-01", "gw-1", 1, [0, 1, 4],
                            [string_bytes("t")] * 3, [10, 11, 12], [1.0, 2.0, 3.0], [tail] * 3)
    assert peek_header(value) == ("b-17", "acme", "plant1", "press-01", 3)
    assert batch_attributes(value) == {"plantstream.tenant": "acme", "plantstream.site": "plant1",
                                       "plantstream.machine": "press-01", "plantstream.batch_id": "b-17",
                                       "plantstream.readings": 3}
    for bad in (b"", None, b"\xc3\x01" + b"\x00" * 8, value[:14]):
        assert batch_attributes(bad) == {}
    assert key_attributes(b"acme/plant1/press-01") == {
        "plantstream.tenant": "acme", "plantstream.site": "plant1", "plantstream.machine": "press-01"}
    assert key_attributes(b"unknown") == {} and key_attributes(None) == {}


def test_json_lines_exporter_writes_one_object_a_span(tmp_path: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(tmp_path / "t" / "svc.jsonl")))
    tracer = provider.get_tracer("test")
    with message_span(tracer, "svc.batch", [("traceparent", TP.encode())], {"plantstream.readings": 5}):
        pass
    (line,) = (tmp_path / "t" / "svc.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["trace_id"] == f"{TRACE_ID:032x}" and rec["parent_id"] == f"{SPAN_ID:016x}"
    assert rec["name"] == "svc.batch" and rec["attributes"] == {"plantstream.readings": 5}
    assert rec["end"] >= rec["start"] > 0


OFF_PROBE = """
from opentelemetry.sdk.trace import TracerProvider
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers, message_span, setup_tracing
s = Settings.from_env()
tracer = setup_tracing("probe", s)
real = TracerProvider().get_tracer("real")
with real.start_as_current_span("outer"):
    assert inject_headers([("a", b"1")]) == [("a", b"1")], "off: no trace headers"
parent = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
with message_span(tracer, "x", parent) as span:
    assert not span.get_span_context().is_valid and not span.is_recording()
assert not (s.home / "traces").exists()
print("ok")
"""


def test_traces_off_means_no_spans_and_no_headers(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PLANTSTREAM_HOME": str(tmp_path), "PLANTSTREAM_TRACES": "off"}
    done = subprocess.run([sys.executable, "-c", OFF_PROBE], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_settings_for_traces_and_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANTSTREAM_TRACES", raising=False)
    monkeypatch.delenv("PLANTSTREAM_METRICS_PORT", raising=False)
    s = Settings.from_env()
    assert s.traces is True and s.metrics_port == 0
    for raw, want in (("off", False), ("OFF", False), ("on", True), ("0", False)):
        monkeypatch.setenv("PLANTSTREAM_TRACES", raw)
        assert Settings.from_env().traces is want
    monkeypatch.setenv("PLANTSTREAM_TRACES", "sometimes")
    with pytest.raises(ConfigError, match="PLANTSTREAM_TRACES"):
        Settings.from_env()
    monkeypatch.delenv("PLANTSTREAM_TRACES")
    monkeypatch.setenv("PLANTSTREAM_METRICS_PORT", "auto")
    assert Settings.from_env().metrics_port == METRICS_PORT_AUTO
    monkeypatch.setenv("PLANTSTREAM_METRICS_PORT", "9400")
    assert Settings.from_env().metrics_port == 9400
    for bad in ("70000", "-3", "http"):
        monkeypatch.setenv("PLANTSTREAM_METRICS_PORT", bad)
        with pytest.raises(ConfigError, match="PLANTSTREAM_METRICS_PORT"):
            Settings.from_env()


def test_supervisor_gives_each_copy_its_own_port_from_a_base() -> None:
    assert metrics_port_for("9400", "ingest", 0) == 9400
    assert metrics_port_for("9400", "ingest", 1) == 9401
    assert metrics_port_for("9400", "validation", 0) == 9410
    assert metrics_port_for("9400", "archival", 2) == 9442
    assert [metrics_port_for(v, "anomaly", 0) for v in ("", "0", "auto")] == [None, None, None]
    with pytest.raises(PlantstreamError, match="auto"):
        metrics_port_for("9400", "anomaly", 10)
