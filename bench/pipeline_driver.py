"""The gateway fleet of the pipeline benchmark, as its own process.

It pre-generates and encodes one step's gateway batches (simulator factory paced at
``--rate`` readings/s for ``--duration`` s) before the step, so that during the step it only
hands ready messages to Kafka on schedule: generating and encoding readings live would take
a large share of the 2 cores away from the services being measured. Protocol on stdio:
prints ``ready {...}``, waits for a ``go`` line, sends paced to the wall clock, writes the
report (including the send time of every batch of the sampled machines) to ``--out`` and
prints ``done``.

    python bench/pipeline_driver.py --rate 20000 --duration 30 --out step.json  (env: PLANTSTREAM_*)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from plantstream.gateway.contract import encode_gateway_batch
from plantstream.gateway.simulator import DEFAULT_TENANT, Factory
from plantstream.kafka import Output, ReliableProducer
from plantstream.kafkaauth import add_gateway, secured
from plantstream.settings import Settings
from plantstream.topics import TENANT_GATEWAY_READINGS, machine_key

# Readings/s this process pre-generates (simulate + Avro encode) on a free core; used to
# place the factory's clock at the moment sending starts.
PREGEN_READINGS_PER_S = 120_000


def build_factory(machines: int, seed: int, rate: float, duration: float, start_us: int) -> Factory:
    return Factory.build(machines, seed, rate=rate, horizon=duration, start_us=start_us)


def sampled_machines(factory: Factory, every: int) -> set[str]:
    """Every ``every``-th machine: their batches' send times are recorded for latency."""
    return {m.id for i, m in enumerate(factory.machines) if i % every == 0}


def pregenerate(settings: Settings, factory: Factory, duration: float, sample: set[str],
                batch_size: int) -> list[tuple[float, Output, int, str | None, int]]:
    """(due s, message, readings, sampled machine or None, last reading ts) per batch."""
    plan = []
    for batch, due in factory.timed_batches(duration, batch_size):
        topic = TENANT_GATEWAY_READINGS.for_tenant(settings, batch["tenant"])  # as its gateway sends it
        value, headers = encode_gateway_batch(batch, "avro")
        key = machine_key(batch["tenant"], batch["site"], batch["machine"])
        last_ts = max(r["ts"] for r in batch["readings"])
        plan.append((due, Output(topic, key, value, headers), len(batch["readings"]),
                     batch["machine"] if batch["machine"] in sample else None, last_ts))
    return plan


def send(producer: ReliableProducer, plan: list[tuple[float, Output, int, str | None, int]],
         lead: float, duration: float) -> dict[str, Any]:
    """Produce each batch when due (``due - lead`` seconds after go); record send times."""
    go = time.monotonic()
    behind_max = 0.0
    readings = 0
    samples = []
    for due, out, n, machine, last_ts in plan:
        wait = go + due - lead - time.monotonic()
        while wait > 0:
            producer.poll(min(wait, 0.05))
            wait = go + due - lead - time.monotonic()
        behind_max = max(behind_max, -wait)
        if machine is not None:
            samples.append((machine, last_ts, time.time_ns() // 1000))
        producer.produce(out)
        readings += n
    last_send = time.monotonic()
    acked = producer.flush(60.0)
    seconds = last_send - go
    return {"batches": len(plan), "acked": acked, "readings": readings, "send_seconds": round(seconds, 3),
            # the first ticks were complete before sending began: rate over the step's length
            "achieved_readings_per_s": round(readings / max(seconds, duration)),
            "behind_max_s": round(behind_max, 3), "samples": samples}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, required=True, help="readings/s")
    ap.add_argument("--duration", type=float, required=True, help="seconds of sending")
    ap.add_argument("--machines", type=int, default=48)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--sample-every", type=int, default=4, help="record send times of every Nth machine")
    ap.add_argument("--start-after-us", type=int, default=0,
                    help="readings start after this time (µs; keeps timestamps rising across steps)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    t0 = time.monotonic()
    expected = args.rate * args.duration / PREGEN_READINGS_PER_S + 1.0
    start_us = max((time.time_ns() // 1000) + int(expected * 1_000_000), args.start_after_us)
    factory = build_factory(args.machines, args.seed, args.rate, args.duration, start_us)
    sample = sampled_machines(factory, args.sample_every)
    plan = pregenerate(settings, factory, args.duration, sample, args.batch_size)
    # the factory's gateway logs in as one, as in production: it may write its tenant's topic only
    gateway = add_gateway(settings, "bench", DEFAULT_TENANT) if secured(settings) else settings
    producer = ReliableProducer(gateway)
    pregen_s = time.monotonic() - t0
    print("ready " + json.dumps({"batches": len(plan), "pregen_s": round(pregen_s, 2),
                                 "sampled_machines": sorted(sample)}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    # The first batch is due when its ticks are complete; start sending at once with it.
    lead = plan[0][0] if plan else 0.0
    # how far the readings' timestamps lag the wall clock (the pre-generation estimate's error)
    clock_offset_s = ((time.time_ns() // 1000 - start_us) / 1e6) - lead
    report = send(producer, plan, lead, args.duration)
    report.update({"target_readings_per_s": args.rate, "pregen_s": round(pregen_s, 2),
                   "last_ts_us": max((p[4] for p in plan), default=start_us),
                   "clock_offset_s": round(clock_offset_s, 2)})
    args.out.write_text(json.dumps(report))
    print("done", flush=True)


if __name__ == "__main__":
    main()
