"""Kafka's own ceiling on this machine: Apache Kafka's ProducerPerformance and
ConsumerPerformance tools (from the broker's jars, via deploy/local/kafka.sh) against a private
broker, with records the size of a typical gateway batch message.

The record size is measured, not assumed: the median Avro ``gateway_batch`` of 100 readings
from the factory simulator. The producer runs with the pipeline's own producer settings
(acks=all, idempotent, linger.ms=5, lz4, 1 MB batches) for about ``--seconds`` seconds (a short
calibration run sizes it); the consumer then reads those records back. Records/s become
readings/s by multiplying with the readings per message, which is what the pipeline benchmark
compares itself against. Figures are printed and written to bench/results/kafka.json.

    .venv/bin/python bench/bench_kafka.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from dataclasses import replace
from typing import Any

from common import BenchError, figure_table, machine_facts, write_results

from plantstream.gateway.contract import encode_gateway_batch
from plantstream.gateway.simulator import Factory
from plantstream.kafka import create_topics
from plantstream.localbroker import LocalBroker
from plantstream.settings import Settings
from plantstream.topics import TopicSpec

PERF_TOPIC = TopicSpec("bench.kafka-perf", "gateway_batch", "Kafka perf tools' records (benchmark only).")
# The pipeline's producer settings (plantstream.kafka.producer_config), in the Java client's names.
PRODUCER_PROPS = {"acks": "all", "enable.idempotence": "true", "linger.ms": "5", "compression.type": "lz4",
                  "batch.size": "1000000", "max.request.size": str(4 * 1024 * 1024)}
CALIBRATION_RECORDS = 20_000
MAX_RECORDS = 3_000_000

_PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th")


def gateway_message_size(batch_size: int = 100, machines: int = 40) -> dict[str, float]:
    """Median bytes and mean readings of simulator gateway batches encoded as Avro."""
    factory = Factory.build(machines, seed=7, horizon=120, start_us=1_777_636_800_000_000)
    sizes, readings = [], []
    for batch in factory.batches(until=60, batch_size=batch_size):
        value, _ = encode_gateway_batch(batch, "avro")
        sizes.append(len(value))
        readings.append(len(batch["readings"]))
    return {"record_bytes": int(statistics.median(sizes)), "readings_per_record": statistics.fmean(readings),
            "batches_measured": len(sizes)}


def parse_producer(output: str) -> dict[str, float]:
    """The final summary line of ProducerPerformance."""
    found = list(_PRODUCER_SUMMARY.finditer(output))
    if not found:
        raise BenchError(f"no summary line in ProducerPerformance output:\n{output[-1500:]}")
    m = found[-1]
    return {"records": int(m["records"]), "records_per_s": float(m["rps"]), "mb_per_s": float(m["mbps"]),
            "latency_avg_ms": float(m["avg"]), "latency_max_ms": float(m["max"]),
            "latency_p50_ms": float(m["p50"]), "latency_p95_ms": float(m["p95"]),
            "latency_p99_ms": float(m["p99"]), "latency_p999_ms": float(m["p999"])}


def parse_consumer(output: str) -> dict[str, float]:
    """ConsumerPerformance's CSV header and result line; rates exclude the group join."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    header_at = next((i for i, ln in enumerate(lines) if ln.startswith("start.time")), None)
    if header_at is None or header_at + 1 >= len(lines):
        raise BenchError(f"no result in ConsumerPerformance output:\n{output[-1500:]}")
    names = [n.strip() for n in lines[header_at].split(",")]
    values = [v.strip() for v in lines[header_at + 1].split(",")]
    row = dict(zip(names, values, strict=False))
    try:
        return {"records": int(row["data.consumed.in.nMsg"]), "mb": float(row["data.consumed.in.MB"]),
                "records_per_s": float(row["fetch.nMsg.sec"]), "mb_per_s": float(row["fetch.MB.sec"]),
                "records_per_s_incl_join": float(row["nMsg.sec"]),
                "join_ms": float(row["rebalance.time.ms"]), "fetch_ms": float(row["fetch.time.ms"])}
    except (KeyError, ValueError) as exc:
        raise BenchError(f"unexpected ConsumerPerformance result {row}") from exc


def run_producer(broker: LocalBroker, topic: str, records: int, size: int) -> dict[str, float]:
    props = [f"{k}={v}" for k, v in PRODUCER_PROPS.items()]
    out = broker.tool("perf-producer", ["--bootstrap-server", broker.bootstrap, "--topic", topic,
                                        "--num-records", str(records), "--record-size", str(size),
                                        "--throughput", "-1", "--command-property", *props],
                      timeout=180)
    return parse_producer(out)


def run_consumer(broker: LocalBroker, topic: str, records: int) -> dict[str, float]:
    out = broker.tool("perf-consumer", ["--bootstrap-server", broker.bootstrap, "--topic", topic,
                                        "--num-records", str(records), "--timeout", "20000",
                                        "--group", f"bench-perf-consumer-{time.time_ns()}",
                                        "--command-property", "isolation.level=read_committed"],
                      timeout=180)
    return parse_consumer(out)


def measure(broker: LocalBroker, settings: Settings, seconds: float = 10.0,
            records: int | None = None) -> dict[str, Any]:
    """Kafka's producer and consumer ceiling on ``broker`` (records and readings per second).
    ``records`` fixes the count (no calibration), for quick runs."""
    create_topics(settings, [PERF_TOPIC])
    topic = PERF_TOPIC.physical(settings)
    msg = gateway_message_size()
    t0 = time.monotonic()
    calibration = None
    if records is None:
        calibration = run_producer(broker, topic, CALIBRATION_RECORDS, msg["record_bytes"])
        # a short run is slowed by JVM warm-up: it under-estimates the steady rate about 2-3x
        steady = 2.5 * calibration["records_per_s"]
        records = int(min(MAX_RECORDS, max(CALIBRATION_RECORDS, steady * seconds)))
    producer = run_producer(broker, topic, records, msg["record_bytes"])
    consumer = run_consumer(broker, topic, records + (calibration["records"] if calibration else 0))
    per = msg["readings_per_record"]
    return {"tools": "org.apache.kafka.tools.ProducerPerformance / ConsumerPerformance",
            "kafka_version": broker.version(), "partitions": settings.partitions,
            "producer_props": PRODUCER_PROPS, "message": msg, "calibration": calibration,
            "producer": {**producer, "readings_per_s": round(producer["records_per_s"] * per)},
            "consumer": {**consumer, "readings_per_s": round(consumer["records_per_s"] * per)},
            "seconds": round(time.monotonic() - t0, 1)}


def print_figures(res: dict[str, Any]) -> None:
    p, c, msg = res["producer"], res["consumer"], res["message"]
    figure_table(f"Kafka {res['kafka_version']} tools, {msg['record_bytes']} B records "
                 f"({msg['readings_per_record']:.1f} readings each), {res['partitions']} partitions", [
        {"tool": "producer", "records/s": round(p["records_per_s"]), "MB/s": p["mb_per_s"],
         "readings/s": p["readings_per_s"], "lat avg ms": p["latency_avg_ms"],
         "p50 ms": p["latency_p50_ms"], "p99 ms": p["latency_p99_ms"]},
        {"tool": "consumer", "records/s": round(c["records_per_s"]), "MB/s": c["mb_per_s"],
         "readings/s": c["readings_per_s"], "lat avg ms": None, "p50 ms": None, "p99 ms": None},
    ])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="target length of the producer run")
    ap.add_argument("--records", type=int, default=None, help="fixed record count (skips calibration)")
    args = ap.parse_args(argv)
    with LocalBroker.start_new() as broker:
        settings = replace(Settings.from_env(), home=broker.home, kafka_bootstrap=broker.bootstrap,
                           clickhouse_url="chdb://memory")
        res = {"benchmark": "Kafka producer/consumer ceiling", **machine_facts(),
               **measure(broker, settings, args.seconds, args.records)}
    print_figures(res)
    print(f"-> {write_results('kafka', res)}")
    return res


if __name__ == "__main__":
    main()
