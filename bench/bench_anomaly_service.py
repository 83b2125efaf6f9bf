"""End-to-end throughput of the anomaly service (``python -m anomaly``) on a real broker.

Produces reading_batch records (default 50 machines x 10 sensors, 100 readings a batch)
straight to readings.valid, in Kafka transactions of ``--tx-size`` records as the validation
service writes that topic (each leaves a commit marker: offset gaps; 0: no transactions),
starts the service, and measures readings/s from its first
commit until it has committed everything, plus its peak RSS. In the same run it measures
the baseline: the service's scoring path (``Scorer.handle`` on the same bytes, no Kafka) on
one core, and reports the ratio. Uses PLANTSTREAM_KAFKA_BOOTSTRAP if set, else starts its
own broker on a free port with deploy/local/kafka.sh. JSON: bench/results/anomaly_service.json.

Run: ``.venv/bin/python bench/bench_anomaly_service.py [--machines 50 --samples 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from anomaly.config import detector_factory, scorer_config
from anomaly.scorer import Scorer
from anomaly.synthetic import SyntheticMachine, asset_record, stream
from plantstream.assets import publish_assets
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters
from plantstream.kafka import consumer_config, create_topics, producer_config
from plantstream.localbroker import LocalBroker
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID

REPO = Path(__file__).resolve().parents[1]
def committed(settings: Settings, tps: list[TopicPartition]) -> list[int]:
    c = Consumer(consumer_config(settings, "anomaly"))
    try:
        return [max(tp.offset, 0) for tp in c.committed(tps, timeout=10)]
    except KafkaException:
        return [0] * len(tps)
    finally:
        c.close()


def produce(settings: Settings, topic: str, data: list[tuple[bytes, bytes]], tx_size: int) -> dict[int, int]:
    """Write ``data`` in transactions of ``tx_size`` records (0: none); the last offset per partition."""
    conf = producer_config(settings)
    if tx_size:
        conf["transactional.id"] = f"bench-{uuid.uuid4().hex}"
    prod = Producer(conf)
    last: dict[int, int] = {}

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            raise SystemExit(f"produce failed: {err}")
        last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())  # type: ignore[attr-defined]

    if tx_size:
        prod.init_transactions(30)
    step = tx_size or len(data)
    for i in range(0, len(data), step):
        if tx_size:
            prod.begin_transaction()
        for k, v in data[i:i + step]:
            prod.produce(topic, v, k, on_delivery=delivered)
            prod.poll(0)
        if tx_size:
            prod.commit_transaction(60)
    prod.flush(120)
    return last


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def baseline(settings: Settings, data: list[tuple[bytes, bytes]]) -> float:
    """Readings/s of the scoring path alone (decode, rows, detector, events) on one core."""
    sc = Scorer(detector_factory(settings), scorer_config(settings), DeadLetters(settings, "anomaly"),
                READINGS_VALID.physical(settings), settings)
    n = 0
    t0 = time.perf_counter()
    for off, (k, v) in enumerate(data):
        out = sc.handle(k, v, 0, off)
        n += out.readings
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--samples", type=int, default=2000, help="sample times per machine")
    ap.add_argument("--tx-size", type=int, default=20,
                    help="records per Kafka transaction on readings.valid (0: no transactions)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/anomaly_service.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-anomaly-"))
    broker = None
    bootstrap = os.environ.get("PLANTSTREAM_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = LocalBroker.new(tmp / "kafka")
        broker.start()
        bootstrap = broker.bootstrap
    s = replace(Settings.from_env(), home=tmp, kafka_bootstrap=bootstrap,
                topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.", anomaly_warmup=200)
    try:
        create_topics(s)
        sensors = [f"s{i}" for i in range(args.sensors)]
        ms = [SyntheticMachine("bench", "site", f"m{i:03d}", sensors, seed=i) for i in range(args.machines)]
        publish_assets(s, [asset_record(m) for m in ms])
        codec = AvroCodec()
        per_batch = max(1, 100 // args.sensors)
        data = [(k, codec.encode("reading_batch", r)) for k, r in stream(ms, args.samples, per_batch)]
        readings = args.machines * args.sensors * args.samples
        topic = READINGS_VALID.physical(s)
        last = produce(s, topic, data, args.tx_size)
        how = f"transactions of {args.tx_size}" if args.tx_size else "no transactions"
        print(f"produced {len(data):,} batches = {readings:,} readings ({how})", flush=True)
        base = baseline(s, data)
        print(f"baseline scoring path: {base:,.0f} readings/s (one core, no Kafka)", flush=True)

        tps = [TopicPartition(topic, p) for p in range(s.partitions)]
        # Past the last record, not the end offset: a trailing commit marker is never delivered,
        # so a consumer never commits past it.
        ends = [last.get(p, -1) + 1 for p in range(s.partitions)]
        env = {**os.environ, "PLANTSTREAM_HOME": str(tmp), "PLANTSTREAM_KAFKA_BOOTSTRAP": bootstrap,
               "PLANTSTREAM_TOPIC_PREFIX": s.topic_prefix, "PLANTSTREAM_PARTITIONS": str(s.partitions),
               "PLANTSTREAM_ANOMALY_WARMUP": "200", "PLANTSTREAM_LOG_LEVEL": "WARNING"}
        t_start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "anomaly"], env=env,
                                stdout=(tmp / "svc.log").open("w"), stderr=subprocess.STDOUT)
        t_first = None
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"service exited: {(tmp / 'svc.log').read_text()[-2000:]}")
            done = committed(s, tps)
            if t_first is None and sum(done) > 0:
                t_first = time.monotonic()
            if all(d >= e for d, e in zip(done, ends, strict=True)):
                break
            time.sleep(0.25)
        t_end = time.monotonic()
        rss = peak_rss_mb(proc.pid)
        proc.terminate()
        proc.wait(60)
        t_first = t_first or t_start
        svc = readings / max(t_end - t_first, 1e-9)
        res = {
            "benchmark": "anomaly service end to end (readings.valid -> anomalies, real broker)",
            "machines": args.machines, "sensors_per_machine": args.sensors, "samples": args.samples,
            "readings": readings, "batches": len(data), "readings_per_batch": per_batch * args.sensors,
            "input_transaction_size": args.tx_size,
            "startup_s": t_first - t_start, "consume_s": t_end - t_first,
            "service_readings_per_s": svc, "service_peak_rss_mb": rss,
            "baseline_scoring_readings_per_s_one_core": base, "ratio_service_to_baseline": svc / base,
            "cpu_count": os.cpu_count(),
        }
        print(json.dumps(res, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.out}")
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
