"""Tracing and metrics of the running platform: the five services as real processes on the real
broker (archival on embedded ClickHouse), simulator batches sent by the gateway sender in a
process of its own with tracing set up.

Asserted:
- every gateway batch is one trace: its ``gateway.send`` root span, and one span in each of
  ingest, validation, anomaly, maintenance and archival, chained parent to child, all naming
  the batch id;
- a malformed gateway message gets an ingest span (a trace of its own) and its dead letter is
  archived in the same trace;
- every service's Prometheus endpoint (port chosen with ``PLANTSTREAM_METRICS_PORT=auto`` and
  published in ``run/<instance>.metrics``) reports records in > 0 and a consumer lag gauge per
  input partition that drains to (about) zero; ingest counts the dead letter by reason.

The services are started in parallel and share one start-up (module fixture): faust apps
take ~8 s to start on an idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from conftest import settings_env
from prometheus_client.parser import text_string_to_metric_families

from plantstream.assets import publish_assets
from plantstream.gateway.contract import CONTENT_TYPE_AVRO, HEADER_CONTENT_TYPE
from plantstream.gateway.simulator import Factory
from plantstream.kafka import Output, create_topics
from plantstream.settings import Settings
from plantstream.topics import (
    GATEWAY_READINGS,
    READINGS_NORMALIZED,
    READINGS_VALID,
    TENANT_GATEWAY_READINGS,
    machine_key,
)

from kafka_io import produce_all

SERVICES = ("ingest", "validation", "anomaly", "maintenance", "archival")
CHAIN = ("gateway", "ingest", "validation", "anomaly", "maintenance", "archival")
SIM = {"machines": 3, "seed": 11, "horizon": 20.0}
BATCH = 40
SENDER = """
import sys
from plantstream.gateway.sender import send_batches
from plantstream.gateway.simulator import Factory
from plantstream.settings import Settings
from plantstream.telemetry import flush_tracing, setup_tracing
s = Settings.from_env()
setup_tracing("gateway", s)
f = Factory.build({machines}, seed={seed}, horizon={horizon}, start_us={start_us})
report = send_batches(s, ((b, None) for b in f.batches(batch_size={batch})))
flush_tracing()
print(report.batches)
"""


@dataclass
class Stack:
    settings: Settings
    procs: dict[str, subprocess.Popen]
    logs: Path
    batches: set[str]
    bad_key: bytes

    def log_tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-3000:]

    def assert_alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} exited:\n{self.log_tail(name)}"


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("telemetry")
    s = replace(Settings.from_env(), home=home, kafka_bootstrap=broker.bootstrap,
                clickhouse_url=f"chdb://{home / 'clickhouse'}", topic_prefix=f"tel-{uuid.uuid4().hex[:6]}.",
                partitions=4, instance=f"test-{os.getpid()}")
    create_topics(s)
    start_us = time.time_ns() // 1000 - int(SIM["horizon"] * 1e6) - 5_000_000
    factory = Factory.build(SIM["machines"], seed=SIM["seed"], horizon=SIM["horizon"], start_us=start_us)
    publish_assets(s, factory.assets())
    batches = {b["batch_id"] for b in factory.batches(batch_size=BATCH)}
    env = settings_env(s) | {"PLANTSTREAM_METRICS_PORT": "auto", "PLANTSTREAM_LOG_LEVEL": "INFO"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.pop("PLANTSTREAM_TRACES", None)
    logs = home / "logs"
    logs.mkdir()
    procs = {}
    for name in SERVICES:  # all at once: start-up is the slow part
        procs[name] = subprocess.Popen([sys.executable, "-m", name],
                                       env=env | {"PLANTSTREAM_INSTANCE": f"{name}-0"},
                                       stdout=(logs / f"{name}.log").open("w"), stderr=subprocess.STDOUT)
    stack = Stack(s, procs, logs, batches, machine_key("acme", "plant1", "no-such-gateway-format"))
    try:
        # The data waits in Kafka while the services start (they read from the earliest offset).
        sender = subprocess.run([sys.executable, "-c", SENDER.format(**SIM, start_us=start_us, batch=BATCH)],
                                env=env | {"PLANTSTREAM_INSTANCE": "gateway-0"}, capture_output=True,
                                text=True, timeout=60)
        assert sender.returncode == 0, sender.stderr
        assert int(sender.stdout.split()[-1]) == len(batches)
        produce_all(s, [Output(GATEWAY_READINGS.physical(s), stack.bad_key, b"\x00not a gateway batch",
                               [(HEADER_CONTENT_TYPE, CONTENT_TYPE_AVRO.encode())])])
        yield stack
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def spans(home: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((home / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def traces_by_batch(all_spans: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """batch id -> service -> spans of the trace whose gateway.send root names that batch."""
    roots = {s["trace_id"]: s["attributes"]["plantstream.batch_id"] for s in all_spans
             if s["name"] == "gateway.send"}
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for s in all_spans:
        if s["trace_id"] in roots:
            out[roots[s["trace_id"]]][s["service"]].append(s)
    return out


def test_one_trace_follows_each_gateway_batch_through_every_service(stack: Stack) -> None:
    deadline = time.monotonic() + 75
    complete: set[str] = set()
    by_batch: dict[str, dict[str, list[dict[str, Any]]]] = {}
    while time.monotonic() < deadline:
        stack.assert_alive()
        by_batch = traces_by_batch(spans(stack.settings.home))
        complete = {b for b, per in by_batch.items() if set(CHAIN) <= set(per)}
        if complete == stack.batches:
            break
        time.sleep(1.0)
    missing = {b: sorted(set(CHAIN) - set(by_batch.get(b, {}))) for b in stack.batches - complete}
    assert not missing, f"batches whose trace misses services: {dict(list(missing.items())[:5])}"

    for batch_id in sorted(stack.batches)[:10]:
        per = by_batch[batch_id]
        assert len({s["trace_id"] for ss in per.values() for s in ss}) == 1
        (root,) = per["gateway"]
        (ing,) = per["ingest"]
        (val,) = per["validation"]
        assert root["parent_id"] is None
        assert ing["parent_id"] == root["span_id"]
        assert val["parent_id"] == ing["span_id"]
        # anomaly and maintenance both read the valid batch; archival archives it (and more)
        for name in ("anomaly", "maintenance"):
            assert [s["parent_id"] for s in per[name]] == [val["span_id"]], name
        assert val["span_id"] in {s["parent_id"] for s in per["archival"]}
        for s in (ing, val, *per["anomaly"], *per["maintenance"]):
            attrs = s["attributes"]
            assert attrs["plantstream.batch_id"] == batch_id, s
            assert attrs["plantstream.tenant"] == root["attributes"]["plantstream.tenant"]
            assert attrs["plantstream.machine"] == root["attributes"]["plantstream.machine"]
            assert attrs["kafka.offset"] >= 0 and attrs["kafka.partition"] >= 0
        assert val["attributes"]["plantstream.readings"] == root["attributes"]["plantstream.readings"]
        assert val["attributes"]["kafka.topic"] == READINGS_NORMALIZED.physical(stack.settings)
        assert per["anomaly"][0]["attributes"]["kafka.topic"] == READINGS_VALID.physical(stack.settings)

    # the malformed message: an ingest span starts its trace; its dead letter is archived in it
    all_spans = spans(stack.settings.home)
    bad = [s for s in all_spans if s["service"] == "ingest" and s["parent_id"] is None
           and s["attributes"].get("plantstream.machine") == "no-such-gateway-format"]
    assert len(bad) == 1, bad
    assert "plantstream.batch_id" not in bad[0]["attributes"]  # nothing decodable
    archived = [s for s in all_spans if s["service"] == "archival" and s["trace_id"] == bad[0]["trace_id"]]
    assert [s["parent_id"] for s in archived] == [bad[0]["span_id"]]


def scrape(stack: Stack, name: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    port = int((stack.settings.home / "run" / f"{name}-0.metrics").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def test_every_service_serves_records_in_and_consumer_lag(stack: Stack) -> None:
    deadline = time.monotonic() + 75
    s = stack.settings
    ingest_topics = {GATEWAY_READINGS.physical(s), TENANT_GATEWAY_READINGS.for_tenant(s, "demo")}
    last: dict[str, Any] = {}
    pending = set(SERVICES)
    while pending and time.monotonic() < deadline:
        stack.assert_alive()
        for name in sorted(pending):
            if not (stack.settings.home / "run" / f"{name}-0.metrics").exists():
                continue
            m = last[name] = scrape(stack, name)
            records_in = sum(v for labels, v in m["plantstream_records_in_total"]
                             if labels["service"] == name)
            lags = [(labels, v) for labels, v in m["plantstream_consumer_lag"] if labels["service"] == name]
            # drained: every partition's lag within the one offset a transaction marker takes,
            # and (ingest) both of its input topics measured: the lag gauges are refreshed every
            # 2 s, so an early scrape can have the tenant's topic and not yet the operator's
            topics = {labels["topic"] for labels, _ in lags}
            if (records_in > 0 and lags and all(v <= 1 for _, v in lags)
                    and (name != "ingest" or topics >= ingest_topics)):
                pending.discard(name)
        time.sleep(1.0)
    assert not pending, {n: {k: v for k, v in last.get(n, {}).items() if "records_in" in k or "lag" in k}
                         for n in pending}

    ingest = last["ingest"]
    ingest_in = {labels["service"]: v for labels, v in ingest["plantstream_records_in_total"]}
    assert ingest_in["ingest"] == len(stack.batches) + 1  # the batches and the malformed message
    dead = {labels["reason"]: v for labels, v in ingest["plantstream_dead_letters_total"]
            if labels["service"] == "ingest"}
    assert dead == {"not_avro": 1.0}
    out = {labels["topic"]: v for labels, v in ingest["plantstream_records_out_total"]}
    assert out[READINGS_NORMALIZED.physical(s)] == len(stack.batches)
    lag_topics = {labels["topic"] for labels, _ in ingest["plantstream_consumer_lag"]}
    # the tenant's gateway topic (the simulated gateway's) and the operator's (the bad message)
    assert lag_topics == ingest_topics
    assert {labels["partition"] for labels, _ in ingest["plantstream_consumer_lag"]} <= {"0", "1", "2", "3"}
    assert ingest["plantstream_batch_seconds_count"][0][1] >= 1
    validation_in = sum(v for _, v in last["validation"]["plantstream_records_in_total"])
    assert validation_in == len(stack.batches)
    assert any(labels["topic"] == READINGS_VALID.physical(s)
               for labels, _ in last["anomaly"]["plantstream_consumer_lag"])
    assert "plantstream_alerts_open" in scrape(stack, "maintenance")
