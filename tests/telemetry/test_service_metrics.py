"""Service metrics: the Prometheus endpoint (fixed off, or a free port published for scrapers),
lag, dead-letter and open-alert series, consumer lag measured from a real consumer's position
against the real broker's high watermark, and OTLP export of metrics and spans to a
collector on loopback (a small OTLP/HTTP receiver in the test)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import REGISTRY

from plantstream.consumerlag import ConsumerLagMeter
from plantstream.kafka import Output, consumer_config
from plantstream.metrics import ServiceMetrics, metrics_file, serve
from plantstream.settings import METRICS_PORT_AUTO, Settings
from plantstream.topics import READINGS_VALID

from kafka_io import produce_all


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_counters_lag_and_open_alerts_are_exported() -> None:
    m = ServiceMetrics("unit-a")
    m.batch(5, [Output("t1", None, b""), Output("t1", None, b""), Output("t2", None, b"")], 0.02)
    m.dead_letter("out_of_range", 2)
    assert sample("plantstream_records_in_total", service="unit-a") == 5
    assert sample("plantstream_records_out_total", service="unit-a", topic="t1") == 2
    assert sample("plantstream_dead_letters_total", service="unit-a", reason="out_of_range") == 2
    assert sample("plantstream_batch_seconds_count", service="unit-a") == 1
    m.lag("in", 3, 42)
    assert sample("plantstream_consumer_lag", service="unit-a", topic="in", partition="3") == 42
    m.forget_lag("in", 3)
    assert sample("plantstream_consumer_lag", service="unit-a", topic="in", partition="3") is None
    m.open_alerts(b"m1", 2)
    m.open_alerts(b"m2", 1)
    m.open_alerts(b"m1", 0)
    assert sample("plantstream_alerts_open", service="unit-a") == 1


def test_endpoint_on_a_free_port_is_published(tmp_path: Path) -> None:
    s = replace(Settings.from_env(), home=tmp_path, metrics_port=METRICS_PORT_AUTO, instance="unit-b-0",
                otlp_endpoint=None)
    port = serve(s, "unit-b")
    assert metrics_file(s).read_text().strip() == str(port) and port > 0
    ServiceMetrics("unit-b").batch(1, [], 0.001)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'plantstream_records_in_total{service="unit-b"} 1.0' in text
    off = replace(s, metrics_port=0, instance="unit-c-0")
    assert serve(off, "unit-c") == 0 and not metrics_file(off).exists()


def test_consumer_lag_is_high_watermark_minus_position(settings: Settings) -> None:
    topic = READINGS_VALID.physical(settings)
    produce_all(settings, [Output(topic, b"k", b"v%d" % i, partition=1) for i in range(10)])
    m = ServiceMetrics("unit-lag")
    meter = ConsumerLagMeter(m)
    consumer = Consumer(consumer_config(settings, "unit-lag"))
    try:
        consumer.assign([TopicPartition(topic, 1, 0), TopicPartition(topic, 2, 0)])
        got: list = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            got += [x for x in consumer.consume(4 - len(got), 1.0) if x.error() is None]
        assert len(got) == 4
        meter.update(consumer)
        assert m.lags[(topic, 1)] == 6  # produced without a transaction: no marker offsets
        assert (topic, 2) not in m.lags or m.lags[(topic, 2)] == 0  # empty partition
        while len(got) < 10 and time.monotonic() < deadline:
            got += [x for x in consumer.consume(10 - len(got), 1.0) if x.error() is None]
        meter.update(consumer)
        assert m.lags[(topic, 1)] == 0
        consumer.incremental_unassign([TopicPartition(topic, 1)])
        meter.update(consumer)
        assert (topic, 1) not in m.lags
        assert sample("plantstream_consumer_lag", service="unit-lag", topic=topic, partition="1") is None
    finally:
        consumer.close()


class _Collector(BaseHTTPRequestHandler):
    received: dict[str, list[bytes]] = {}

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    received: dict[str, list[bytes]] = {}
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()


OTLP_PROBE = """
from plantstream.metrics import ServiceMetrics, serve
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, message_span, setup_tracing
s = Settings.from_env()
tracer = setup_tracing("probe", s)
assert serve(s, "probe") == 0
m = ServiceMetrics("probe")
m.batch(3, [], 0.01)
m.lag("in", 0, 7)
with message_span(tracer, "probe.batch", None, {"plantstream.readings": 3}):
    pass
flush_tracing()
"""  # metrics: exported at exit (and every OTEL_METRIC_EXPORT_INTERVAL)


def test_otlp_export_of_spans_and_metrics(tmp_path: Path, collector: tuple) -> None:
    url, received = collector
    env = {"PATH": "/usr/bin:/bin", "PLANTSTREAM_HOME": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": url,
           "PLANTSTREAM_METRICS_PORT": "0", "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
    done = subprocess.run([sys.executable, "-c", OTLP_PROBE], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "traces").exists()  # OTLP instead of the local files

    traces = ExportTraceServiceRequest()
    traces.ParseFromString(received["/v1/traces"][0])
    (rs,) = traces.resource_spans
    assert {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"] == "probe"
    (span,) = [s for ss in rs.scope_spans for s in ss.spans]
    assert span.name == "probe.batch"

    values = {}
    for body in received["/v1/metrics"]:
        req = ExportMetricsServiceRequest()
        req.ParseFromString(body)
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = metric.sum.data_points or metric.gauge.data_points
                    for p in points:
                        labels = json.dumps({a.key: a.value.string_value for a in p.attributes},
                                            sort_keys=True)
                        values[(metric.name, labels)] = p.as_double or p.as_int
    assert values[("plantstream_records_in_total", '{"service": "probe"}')] == 3
    assert values[("plantstream_consumer_lag", '{"partition": "0", "service": "probe", "topic": "in"}')] == 7
