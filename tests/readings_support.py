"""Helpers shared by the ingest and validation tests: a small asset registry, batches built by
hand, running the processors in-process or as real subprocesses, and reading every outcome
back from the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace

from archival.sink import ArchivalSink
from ingest.processor import IngestProcessor
from plantstream.assets import AssetRegistry, parse_assets, publish_assets
from plantstream.avro import AvroCodec
from plantstream.db import connect, migrate
from plantstream.gateway.contract import decode_gateway_message, encode_gateway_batch
from plantstream.kafka import Output
from plantstream.readingbatch import _read_long
from plantstream.runner import StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.sinkloop import run_sink
from plantstream.topics import (
    GATEWAY_READINGS,
    READINGS_NORMALIZED,
    READINGS_REJECTED,
    READINGS_VALID,
    machine_key,
)
from validation.processor import ValidationProcessor

from kafka_io import read_all

TENANT, SITE, MACHINE = "acme", "plant1", "press-01"
ASSET_DOC = {"tenants": [{"id": TENANT, "sites": [{"id": SITE, "machines": [{
    "id": MACHINE, "type": "press", "sensors": [
        {"id": "oil_temp", "tag": "T1", "unit": "degC", "gateway_unit": "degF", "valid": [-40, 200]},
        {"id": "pressure", "tag": "P1", "unit": "bar", "gateway_unit": "psi", "valid": [0, 20]},
        {"id": "vibration", "tag": "V1", "unit": "mm/s", "valid": [0, 50]},
    ]}]}]}]}


def assets() -> list[dict[str, Any]]:
    return parse_assets(ASSET_DOC)


def now_us() -> int:
    return time.time_ns() // 1000


def reading(tag: str, ts: int, value: float, unit: str | None = None, quality: int = 192) -> dict[str, Any]:
    return {"tag": tag, "ts": ts, "value": value, "unit": unit, "quality": quality}


def gateway_batch(batch_id: str, readings: list[dict[str, Any]], machine: str = MACHINE) -> dict[str, Any]:
    return {"batch_id": batch_id, "tenant": TENANT, "site": SITE, "machine": machine, "gateway": "gw-1",
            "sent_at": now_us(), "sequence": None, "readings": readings}


def gateway_output(settings: Settings, batch: dict[str, Any], fmt: str = "avro") -> Output:
    value, headers = encode_gateway_batch(batch, fmt)
    return Output(GATEWAY_READINGS.physical(settings),
                  machine_key(batch["tenant"], batch["site"], batch["machine"]), value, headers)


def run_ingest(settings: Settings, registry: AssetRegistry, idle: float = 4.0) -> IngestProcessor:
    """The ingest processor in-process, on the service's own subscription (every tenant's
    gateway topic and the operator's), until its input is read to the end."""
    from ingest.service import SERVICE

    proc = IngestProcessor(settings, registry, trace.get_tracer("test"))
    topics = [spec.subscription(settings) for spec in SERVICE.sources]
    run_processor(proc, settings, topics, "ingest", stop=StopFlag(),
                  metrics=proc.metrics, idle_exit_after=idle, until_read_to_end=True)
    return proc


def run_validation(settings: Settings, registry: AssetRegistry, idle: float = 4.0) -> ValidationProcessor:
    proc = ValidationProcessor(settings, registry, trace.get_tracer("test"))
    run_processor(proc, settings, [READINGS_NORMALIZED.physical(settings)], "validation", stop=StopFlag(),
                  metrics=proc.metrics, idle_exit_after=idle, until_read_to_end=True)
    return proc


def run_archival(settings: Settings) -> ArchivalSink:
    """The archival sink in-process until its input is read to the end; the embedded engine is
    closed afterwards (one per process: a CLI or query may open the directory next)."""
    client = connect(settings.clickhouse_url)
    try:
        migrate(client, ttl_days=settings.clickhouse_ttl_days)
        sink = ArchivalSink(client, settings)
        run_sink(sink, settings, sink.topics, "archival", max_wait=0.2, stop=StopFlag(), idle_exit_after=5.0,
                 until_read_to_end=True)
    finally:
        client.close()
    return sink


def start_service(name: str, env: dict[str, str], log_dir: Path, copy: int = 0) -> subprocess.Popen:
    log = (log_dir / f"{name}-{copy}-{time.monotonic_ns()}.log").open("w")
    env = dict(env, PLANTSTREAM_INSTANCE=f"{name}-{copy}-{os.getpid()}")
    return subprocess.Popen([sys.executable, "-m", name], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_service(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def reading_id_of(original: bytes) -> str:
    """The reading_id at the start of an Avro-encoded Reading (a validation dead letter's original)."""
    n, p = _read_long(original, 0)
    return original[p:p + n].decode()


@dataclass
class Outcome:
    """Where every reading sent to gateway.readings ended up, by (partition, offset, index)."""

    sent: dict[tuple[int, int], dict[str, Any] | None]  # gateway message -> decoded batch (None: undecodable)
    valid_ids: Counter[str] = field(default_factory=Counter)
    dead: list[dict[str, Any]] = field(default_factory=list)
    fates: dict[tuple[int, int, int], list[str]] = field(default_factory=dict)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(d["reason"] for d in self.dead)

    def unaccounted(self) -> list[tuple[int, int, int]]:
        return [k for k, v in self.fates.items() if len(v) != 1]


def collect(settings: Settings, expect_readings: int, timeout: float = 90) -> Outcome:
    """Read gateway.readings, readings.valid and readings.rejected and account for every
    sent reading; waits until the fates cover ``expect_readings`` readings (or times out)."""
    codec = AvroCodec()
    sent = sent_messages(settings)
    deadline = time.monotonic() + timeout
    while True:
        out = _account(settings, codec, sent)
        covered = sum(1 for v in out.fates.values() if v)
        if covered >= expect_readings or time.monotonic() > deadline:
            return out
        time.sleep(1)


def sent_messages(settings: Settings) -> dict[tuple[int, int], dict[str, Any] | None]:
    """Every message on gateway.readings by (partition, offset): its decoded batch, or None
    when it cannot be decoded (bad input sent on purpose)."""
    sent: dict[tuple[int, int], dict[str, Any] | None] = {}
    for m in read_all(settings, GATEWAY_READINGS.physical(settings)):
        try:
            sent[(m.partition(), m.offset())] = decode_gateway_message(m.value(), m.headers())
        except Exception:  # noqa: BLE001 - undecodable on purpose
            sent[(m.partition(), m.offset())] = None
    return sent


def _account(settings: Settings, codec: AvroCodec, sent: dict) -> Outcome:
    dead = [codec.decode(m.value(), "dead_letter")
            for m in read_all(settings, READINGS_REJECTED.physical(settings))]
    valid = [r["reading_id"] for m in read_all(settings, READINGS_VALID.physical(settings))
             for r in codec.decode(m.value(), "reading_batch")["readings"]]
    return account(sent, GATEWAY_READINGS.physical(settings), dead, valid)


def account(sent: dict[tuple[int, int], dict[str, Any] | None], gw_topic: str,
            dead: list[dict[str, Any]], valid_ids: list[str]) -> Outcome:
    """The fate of every sent reading, from the dead letters (dicts with the dead_letter
    fields) and the reading ids that came out valid, wherever they were read (Kafka topics
    or ClickHouse tables)."""
    out = Outcome(sent)
    by_batch: dict[str, list[tuple[int, int]]] = {}
    for (p, o), b in sent.items():
        n = len(b["readings"]) if b else 1
        for i in range(n):
            out.fates[(p, o, i if b else -1)] = []
        if b:
            by_batch.setdefault(b["batch_id"], []).append((p, o))
    whole: set[tuple[int, int]] = set()
    per_reading_ids: list[tuple[str, str]] = []
    for d in dead:
        out.dead.append(d)
        if d["source_topic"] == gw_topic:
            p, o, idx = d["source_partition"], d["source_offset"], int(d["id"].rsplit(":", 1)[1])
            if idx == -1:
                whole.add((p, o))
                b = sent.get((p, o))
                for i in range(len(b["readings"]) if b else 1):
                    out.fates.setdefault((p, o, i if b else -1), []).append(f"dead:{d['reason']}")
            else:
                out.fates.setdefault((p, o, idx), []).append(f"dead:{d['reason']}")
        else:  # validation: per-reading dead letters carry the Avro Reading
            assert d["id"].rsplit(":", 1)[1] != "-1", d
            per_reading_ids.append((reading_id_of(d["original"]), f"dead:{d['reason']}"))
    for rid in valid_ids:
        out.valid_ids[rid] += 1
        per_reading_ids.append((rid, "valid"))
    for rid, fate in per_reading_ids:
        batch_id, _, idx = rid.rpartition(":")
        accepted = [po for po in by_batch.get(batch_id, []) if po not in whole]
        assert len(accepted) == 1, (rid, by_batch.get(batch_id), whole)
        p, o = accepted[0]
        out.fates.setdefault((p, o, int(idx)), []).append(fate)
    return out


def simulated_batches(machines: int, seconds: float, seed: int = 5) -> tuple[list[dict[str, Any]], list]:
    """Batches of a simulated factory with random faults, and its asset records."""
    from plantstream.gateway.simulator import Factory

    factory = Factory.build(machines=machines, seed=seed, horizon=seconds, faulty=machines // 2)
    return list(factory.batches(batch_size=100)), factory.assets()


def send_paced(settings: Settings, outputs: list[Output], seconds: float) -> None:
    """Produce ``outputs`` spread over ``seconds`` (a stream, so services can be killed mid-way)."""
    from plantstream.kafka import ReliableProducer

    producer = ReliableProducer(settings)
    started = time.monotonic()
    for i, out in enumerate(outputs):
        due = started + seconds * i / len(outputs)
        if due > time.monotonic():
            producer.poll(due - time.monotonic())
        producer.produce(out)
    producer.flush(60)


def publish(settings: Settings, records: list[dict[str, Any]]) -> None:
    assert publish_assets(settings, records) == len(records)
