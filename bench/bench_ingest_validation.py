"""Benchmark: readings/s through ingest + validation on a real broker, peak memory, and a
baseline measured in the same run.

- pair: ``python -m ingest`` and ``python -m validation`` run as processes (as deployed) on
  N pre-produced readings; the rate is taken from the consumer groups' committed offsets,
  from ingest's first commit to validation's last (start-up excluded).
- baseline: the same gateway messages through a pass-through Processor (consume, produce a
  copy, commit in one transaction: the runner's floor for one hop) in this process.
- CPU per reading of each service's ``process()`` alone (no Kafka), on messages read back.

Uses PLANTSTREAM_KAFKA_BOOTSTRAP if set, else starts its own broker with deploy/local/kafka.sh
on a free port. Writes bench/results/ingest_validation.json.

    .venv/bin/python bench/bench_ingest_validation.py [--readings 2000000] [--batch 120 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from opentelemetry import trace

from ingest.processor import IngestProcessor
from plantstream.assets import AssetRegistry, publish_assets
from plantstream.gateway.contract import encode_gateway_batch
from plantstream.gateway.simulator import Factory
from plantstream.kafka import Output, ReliableProducer, consumer_config, create_topics
from plantstream.localbroker import LocalBroker
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import REPO_ROOT, Settings
from plantstream.topics import GATEWAY_READINGS, READINGS_NORMALIZED, TopicSpec, machine_key
from validation.processor import ValidationProcessor

RESULTS = REPO_ROOT / "bench" / "results" / "ingest_validation.json"
PASSTHROUGH = TopicSpec("bench.passthrough", "gateway_batch", "Benchmark baseline output.")


class Passthrough(Processor):
    name = "bench-passthrough"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.first: float | None = None
        self.last = 0.0

    def process(self, messages):  # noqa: ANN001, ANN201 - the runner's signature
        self.first = self.first or time.perf_counter()
        outs = [Output(self.topic, m.key(), m.value(), m.headers() or []) for m in messages]
        self.last = time.perf_counter()
        return outs


def make_messages(settings: Settings, readings: int, batch: int,
                  machines: int) -> tuple[list[Output], int, list]:
    factory = Factory.build(machines, seed=3, faulty=machines // 5,
                            horizon=readings / sum(len(m.mtype.sensors) for m in
                                                   Factory.build(machines, seed=3).machines))
    topic = GATEWAY_READINGS.physical(settings)
    outs, n = [], 0
    for b in factory.batches(batch_size=batch):
        value, headers = encode_gateway_batch(b, "avro")
        outs.append(Output(topic, machine_key(b["tenant"], b["site"], b["machine"]), value, headers))
        n += len(b["readings"])
    return outs, n, factory.assets()


def committed(settings: Settings, group: str, topic: str) -> int:
    c = Consumer(consumer_config(settings, group))
    try:
        parts = c.committed([TopicPartition(topic, p) for p in range(settings.partitions)], timeout=10)
        return sum(max(p.offset, 0) for p in parts)
    finally:
        c.close()


def end_offsets(settings: Settings, topic: str) -> int:
    c = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex}"))
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(settings.partitions))
    finally:
        c.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def env_of(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PLANTSTREAM_HOME": str(s.home), "PLANTSTREAM_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "PLANTSTREAM_TOPIC_PREFIX": s.topic_prefix, "PLANTSTREAM_PARTITIONS": str(s.partitions),
                "PLANTSTREAM_LOG_LEVEL": "WARNING"})
    return env


def run_pair(s: Settings, n_messages: int, n_readings: int) -> dict:
    """Validation is done when ingest has committed every gateway message and validation's
    committed offsets stop moving (transaction markers make end offsets useless here)."""
    gw, norm = GATEWAY_READINGS.physical(s), READINGS_NORMALIZED.physical(s)
    procs = {name: subprocess.Popen([sys.executable, "-m", name], env=env_of(s))
             for name in ("ingest", "validation")}
    t_first = t_end = None
    first_msgs, last_val, last_change = 0, -1, time.perf_counter()
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            done_in = committed(s, "ingest", gw)
            now = time.perf_counter()
            if t_first is None and done_in > 0:
                t_first, first_msgs = now, done_in
            val = committed(s, "validation", norm)
            if val != last_val:
                last_val, last_change = val, now
            if done_in >= n_messages and val > 0 and now - last_change > 3:
                t_end = last_change
                break
            time.sleep(0.1)
        rss = {name: round(peak_rss_mb(p.pid), 1) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
        codes = {name: p.wait(60) for name, p in procs.items()}
    if t_end is None or t_first is None:
        raise SystemExit("the pair did not finish within 600 s")
    counted = n_readings * (n_messages - first_msgs) / n_messages
    return {"readings_per_s": round(counted / (t_end - t_first)), "seconds": round(t_end - t_first, 2),
            "peak_rss_mb": rss, "exit_codes": codes}


def run_baseline(s: Settings, n_readings: int) -> dict:
    create_topics(s, [PASSTHROUGH])
    proc = Passthrough(PASSTHROUGH.physical(s))
    run_processor(proc, s, [GATEWAY_READINGS.physical(s)], "bench-passthrough", stop=StopFlag(),
                  idle_exit_after=3)
    seconds = proc.last - (proc.first or proc.last)
    return {"readings_per_s": round(n_readings / seconds), "seconds": round(seconds, 2)}


def cpu_per_reading(s: Settings, registry: AssetRegistry) -> dict:
    """process() alone, on 400 messages read back from each input topic, no Kafka in the loop."""
    out = {}
    ingest = IngestProcessor(s, registry, trace.get_tracer("bench"))
    validation = ValidationProcessor(s, registry, trace.get_tracer("bench"))
    for name, proc, topic in (("ingest", ingest, GATEWAY_READINGS),
                              ("validation", validation, READINGS_NORMALIZED)):
        c = Consumer(consumer_config(s, f"bench-sample-{uuid.uuid4().hex}"))
        c.assign([TopicPartition(topic.physical(s), p, 0) for p in range(s.partitions)])
        msgs: list = []
        while len(msgs) < 400:
            msgs += [m for m in c.consume(400 - len(msgs), 2) if m.error() is None]
        c.close()
        t0 = time.process_time()
        for _ in range(3):
            outs = proc.process(msgs)
            proc.aborted()  # forget the dedup/order state so each round does the same work
        cpu = time.process_time() - t0
        n = _readings_in(name, msgs) * 3
        out[name] = {"cpu_us_per_reading": round(cpu / n * 1e6, 3), "outputs_per_round": len(outs)}
    return out


def _readings_in(name: str, msgs: list) -> int:
    from plantstream.gateway.contract import decode_gateway_message
    from plantstream.readingbatch import decode_readings

    if name == "ingest":
        return sum(len(decode_gateway_message(m.value(), m.headers())["readings"]) for m in msgs)
    return sum(len(decode_readings(m.value())) for m in msgs)


def one_round(base: Settings, readings: int, batch: int, machines: int) -> dict:
    s = replace(base, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    create_topics(s)
    msgs, n, assets = make_messages(s, readings, batch, machines)
    publish_assets(s, assets)
    producer = ReliableProducer(s)
    for o in msgs:
        producer.produce(o)
    producer.flush(120)
    print(f"batch={batch}: {n:,} readings in {len(msgs):,} messages ({n / len(msgs):.0f} per message)",
          flush=True)
    baseline = run_baseline(s, n)
    print(f"  baseline pass-through (1 hop, 1 process): {baseline['readings_per_s']:,} readings/s",
          flush=True)
    pair = run_pair(s, len(msgs), n)
    print(f"  ingest+validation (2 processes): {pair['readings_per_s']:,} readings/s, "
          f"peak RSS {pair['peak_rss_mb']} MB, {pair['readings_per_s'] / baseline['readings_per_s']:.2f}x "
          "the baseline", flush=True)
    cpu = cpu_per_reading(s, AssetRegistry(assets))
    print(f"  CPU per reading in process(): ingest {cpu['ingest']['cpu_us_per_reading']} µs, "
          f"validation {cpu['validation']['cpu_us_per_reading']} µs", flush=True)
    return {"readings": n, "messages": len(msgs), "readings_per_message": round(n / len(msgs), 1),
            "pair": pair, "baseline_passthrough": baseline,
            "ratio_pair_to_baseline": round(pair["readings_per_s"] / baseline["readings_per_s"], 3),
            "process_cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, nargs="+", default=[120, 500],
                    help="readings per gateway batch (at most; whole ticks)")
    ap.add_argument("--machines", type=int, default=40)
    args = ap.parse_args()
    base = Settings.from_env()
    broker = None
    if not os.environ.get("PLANTSTREAM_KAFKA_BOOTSTRAP"):
        broker = LocalBroker.start_new()
        base = replace(base, kafka_bootstrap=broker.bootstrap)
    base = replace(base, home=Path(tempfile.mkdtemp(prefix="plantstream-bench-")))
    result = {"python": platform.python_version(), "cpus": os.cpu_count(), "machines": args.machines,
              "load_average_1m_before": os.getloadavg()[0], "rounds": {}}
    try:
        for batch in args.batch:
            result["rounds"][str(batch)] = one_round(base, args.readings, batch, args.machines)
    finally:
        if broker is not None:
            broker.stop()  # and removes its folder
        shutil.rmtree(base.home, ignore_errors=True)
    result["load_average_1m_after"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
