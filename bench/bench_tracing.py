"""Micro-benchmark: what tracing costs the hot path, as a ratio with tracing on vs off, in one
process (no Kafka: the cost of Kafka is the same either way).

Work measured: ingest's and validation's ``process()`` on simulator gateway batches (the
validation input is ingest's own output, headers included), exactly as the services run
it: one span per message parented on the message's traceparent, attributes, and the
traceparent injected into every output record. "on" uses the real exporter path
(BatchSpanProcessor -> JSON lines file), its background export time included by flushing
before the clock stops; "sampled_1pct" is the same with OpenTelemetry's standard
parent-based 1% sampler (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
``OTEL_TRACES_SAMPLER_ARG=0.01``), the setting for sustained high rates.

Times are CPU seconds of this process (all its threads, so the exporter thread counts):
the machine is shared, and wall time would measure the neighbours' load as much as
tracing. Also reported: the tracing primitives alone (µs per message) and what tracing
costs at the platform's target rate (150k readings/s in batches of 100 = 1.5k gateway
messages/s, about 5 spans per message across the services).

    .venv/bin/python bench/bench_tracing.py [--readings 300000] [--batch 100] [--repeat 5]

Writes bench/results/tracing.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common import machine_facts, write_results  # noqa: I001  (sets sys.path for a plain checkout)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from ingest.processor import IngestProcessor
from plantstream import telemetry
from plantstream.assets import AssetRegistry
from plantstream.gateway.contract import encode_gateway_batch
from plantstream.gateway.simulator import Factory
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS, READINGS_NORMALIZED, machine_key
from validation.processor import ValidationProcessor

TARGET_READINGS_PER_S = 150_000
SAMPLED = 0.01  # OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
SPANS_PER_MESSAGE = 5  # gateway, ingest, validation, anomaly, maintenance (+ archival per record)


@dataclass
class Msg:
    """A consumed record as the processors see it (the confluent Message methods they call)."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: list[tuple[str, bytes]]

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def gateway_messages(settings: Settings, readings: int, batch: int) -> tuple[list[Msg], AssetRegistry, int]:
    probe = Factory.build(20, seed=5)
    per_second = sum(len(m.mtype.sensors) for m in probe.machines)
    factory = Factory.build(20, seed=5, faulty=4, horizon=readings / per_second)
    topic = GATEWAY_READINGS.physical(settings)
    msgs, n = [], 0
    for i, b in enumerate(factory.batches(batch_size=batch)):
        value, headers = encode_gateway_batch(b, "avro")
        msgs.append(Msg(topic, i % 4, i, machine_key(b["tenant"], b["site"], b["machine"]), value, headers))
        n += len(b["readings"])
    return msgs, AssetRegistry(factory.assets()), n


def run_pair(settings: Settings, registry: AssetRegistry, msgs: list[Msg], flush: Any, tracer: Any) -> float:
    """CPU seconds for ingest + validation ``process()`` over ``msgs`` (fresh processors)."""
    ing = IngestProcessor(settings, registry, tracer)
    val = ValidationProcessor(settings, registry, tracer)
    normalized = READINGS_NORMALIZED.physical(settings)
    t0 = time.process_time()
    for start in range(0, len(msgs), 500):
        outs = ing.process(msgs[start:start + 500])
        ing.committed()
        mid = [Msg(o.topic, i % 4, start + i, o.key, o.value, o.headers)
               for i, o in enumerate(outs) if o.topic == normalized]
        val.process(mid)
        val.committed()
    flush()
    return time.process_time() - t0


def primitives_us(tracer: Any, headers: list[tuple[str, bytes]], value: bytes, flush: Any,
                  n: int = 2000) -> float:
    """CPU µs per message of the tracing calls alone (span, attributes, inject, export)."""
    t0 = time.process_time()
    for i in range(n):
        with telemetry.message_span(tracer, "x", headers, telemetry.kafka_attributes("t", 0, i)):
            telemetry.set_attributes(telemetry.batch_attributes(value))
            telemetry.inject_headers([])
    flush()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="plantstream-bench-tracing-"))
    settings = replace(Settings.from_env(), home=home, topic_prefix="bench.")
    msgs, registry, readings = gateway_messages(settings, args.readings, args.batch)

    providers = {}
    for mode, sampler in (("on", ALWAYS_ON), ("sampled_1pct", ParentBased(TraceIdRatioBased(SAMPLED)))):
        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), sampler=sampler)
        exporter = telemetry.JsonLinesSpanExporter(home / "traces" / f"bench-{mode}.jsonl")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        providers[mode] = provider
    provider = providers["on"]
    tracers = {mode: p.get_tracer("bench") for mode, p in providers.items()}
    tracers["off"] = tracers["on"]

    def on() -> None:
        telemetry._enabled = True  # the switch PLANTSTREAM_TRACES sets at start-up

    def off() -> None:
        telemetry._enabled = False

    run_pair(settings, registry, msgs[:200], provider.force_flush, tracers["on"])  # warm caches and imports
    times: dict[str, list[float]] = {"off": [], "on": [], "sampled_1pct": []}
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits all alike
        for mode, switch in (("off", off), ("on", on), ("sampled_1pct", on)):
            switch()
            times[mode].append(run_pair(settings, registry, msgs, providers.get(mode, provider).force_flush,
                                        tracers[mode]))
    on()
    spans = sum(1 for _ in (home / "traces" / "bench-on.jsonl").open())
    tracer = tracers["on"]
    with tracer.start_as_current_span("parent"):
        headers = telemetry.inject_headers([])
    normalized_value = IngestProcessor(settings, registry, tracer).process(msgs[:1])[0].value
    prim_on = primitives_us(tracer, headers, normalized_value, provider.force_flush)
    off()
    prim_off = primitives_us(tracer, headers, normalized_value, provider.force_flush)

    best_off, best_on = min(times["off"]), min(times["on"])
    per_msg_cost_us = (best_on - best_off) / len(msgs) / 2 * 1e6  # two services per message
    msgs_per_s = TARGET_READINGS_PER_S / args.batch
    result = {
        "readings": readings, "gateway_messages": len(msgs), "batch": args.batch,
        "spans_written": spans,
        "ingest_validation_seconds": {"off": times["off"], "on": times["on"]},
        "ratio_on_vs_off": best_on / best_off,
        "ratio_sampled_1pct_vs_off": min(times["sampled_1pct"]) / best_off,
        "readings_per_s": {"off": readings / best_off, "on": readings / best_on},
        "tracing_us_per_message_per_service": per_msg_cost_us,
        "primitives_us_per_message": {"on": prim_on, "off": prim_off},
        "at_target": {
            "readings_per_s": TARGET_READINGS_PER_S, "messages_per_s": msgs_per_s,
            "spans_per_s": msgs_per_s * SPANS_PER_MESSAGE,
            "cpu_share_of_one_core": msgs_per_s * SPANS_PER_MESSAGE * per_msg_cost_us / 1e6,
        },
        "machine": machine_facts(),
    }
    path = write_results("tracing", result)
    print(f"ingest+validation process() on {readings:,} readings in {len(msgs):,} messages "
          f"(best of {args.repeat}): off {best_off:.3f}s, on {best_on:.3f}s -> ratio "
          f"{best_on / best_off:.3f} ({spans:,} spans written); sampled 1%: ratio "
          f"{result['ratio_sampled_1pct_vs_off']:.3f}")
    print(f"tracing cost per message per service: {per_msg_cost_us:.1f} µs "
          f"(primitives alone: {prim_on:.1f} µs on, {prim_off:.2f} µs off)")
    print(f"at {TARGET_READINGS_PER_S:,} readings/s ({msgs_per_s:,.0f} messages/s, "
          f"~{msgs_per_s * SPANS_PER_MESSAGE:,.0f} spans/s over all services): "
          f"{result['at_target']['cpu_share_of_one_core']:.1%} of one core")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
