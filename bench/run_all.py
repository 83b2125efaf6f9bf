"""``make bench``: every benchmark in sequence within one time budget (default 15 minutes),
then one table of the key figures of each, also written to bench/results/summary.json.

Each script runs as its own process (own broker where it needs one: PLANTSTREAM_KAFKA_BOOTSTRAP
is removed from its environment) and is stopped if it would overrun the budget. A
bench/bench_*.py not listed in PLAN still runs, with its defaults, if time is left. Figures
come only from results files written during this run; an older file is reported as stale.

    .venv/bin/python bench/run_all.py [--budget 900] [--only pipeline archival]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO, RESULTS_DIR, figure_table, machine_facts, write_results

BENCH = REPO / "bench"
PLANTSTREAM_CLI = Path(sys.executable).with_name("plantstream")


@dataclass(frozen=True)
class Bench:
    name: str
    argv: tuple[str, ...]        # a script (run with this interpreter) and its arguments, or a command
    cap_s: float                 # most seconds it may take
    results: tuple[str, ...]     # results files (bench/results/<name>.json) it writes
    figures: tuple[tuple[str, str], ...] = ()  # (label, "results:dotted.path.in.its.json")


def _script(name: str, *args: str) -> tuple[str, ...]:
    return (str(BENCH / f"{name}.py"), *args)


PLAN: tuple[Bench, ...] = (
    Bench("pipeline", _script("bench_pipeline"), 390, ("pipeline", "kafka"), (
        ("sustained readings/s", "pipeline:sustained_readings_per_s"),
        ("to ClickHouse p50 ms @sustained", "pipeline:latency_at_sustained_ms.to_clickhouse.p50"),
        ("to ClickHouse p99 ms @sustained", "pipeline:latency_at_sustained_ms.to_clickhouse.p99"),
        ("to readings.valid p50 ms @sustained", "pipeline:latency_at_sustained_ms.to_valid_visible.p50"),
        ("to readings.valid p99 ms @sustained", "pipeline:latency_at_sustained_ms.to_valid_visible.p99"),
        ("to ClickHouse p50 ms @moderate", "pipeline:latency_at_moderate_ms.to_clickhouse.p50"),
        ("to ClickHouse p99 ms @moderate", "pipeline:latency_at_moderate_ms.to_clickhouse.p99"),
        ("to readings.valid p50 ms @moderate", "pipeline:latency_at_moderate_ms.to_valid_visible.p50"),
        ("to readings.valid p99 ms @moderate", "pipeline:latency_at_moderate_ms.to_valid_visible.p99"),
        ("ratio to Kafka producer", "pipeline:ratio.to_kafka_producer"),
        ("ratio to Kafka consumer", "pipeline:ratio.to_kafka_consumer"),
        ("every group at the log end after", "pipeline:groups_at_log_end.all_at_end"),
        ("Kafka producer readings/s", "kafka:producer.readings_per_s"),
        ("Kafka producer latency p99 ms", "kafka:producer.latency_p99_ms"),
        ("Kafka consumer readings/s", "kafka:consumer.readings_per_s"),
    )),
    Bench("simulator", _script("bench_simulator"), 90, ("simulator",), (
        ("generate readings/s (batch 100)", "simulator:generate.100.readings_per_s"),
        ("Avro encode readings/s", "simulator:contract.avro.encode_readings_per_s"),
        ("Avro decode readings/s", "simulator:contract.avro.decode_readings_per_s"),
    )),
    Bench("anomaly_service", _script("bench_anomaly_service"), 150, ("anomaly_service",), (
        ("service readings/s", "anomaly_service:service_readings_per_s"),
        ("ratio to scoring baseline", "anomaly_service:ratio_service_to_baseline"),
        ("peak RSS MB", "anomaly_service:service_peak_rss_mb"),
    )),
    Bench("ingest_validation", _script("bench_ingest_validation", "--readings", "600000"), 240,
          ("ingest_validation",), (
        ("readings/s (batch 120)", "ingest_validation:rounds.120.pair.readings_per_s"),
        ("ratio to pass-through (batch 120)", "ingest_validation:rounds.120.ratio_pair_to_baseline"),
        ("readings/s (batch 500)", "ingest_validation:rounds.500.pair.readings_per_s"),
    )),
    Bench("archival", _script("bench_archival", "--readings", "10000000"), 240, ("archival",), (
        ("Arrow insert rows/s", "archival:insert.arrow_rows_per_s"),
        ("sink path readings/s", "archival:sink_path.end_to_end_readings_per_s"),
        ("bytes on disk per reading", "archival:disk.bytes_per_reading"),
    )),
    Bench("alerts", _script("bench_alerts"), 300, ("alerts",), (
        ("faults alerted", "alerts:total.faults_alerted"),
        ("faults injected", "alerts:total.faults"),
        ("alerts per alerted fault", "alerts:total.alerts_per_alerted_fault"),
        ("false alerts per machine-week", "alerts:total.false_alerts_per_machine_week"),
        ("lead time to critical, median min", "alerts:total.lead_time_min_median"),
        ("alerts per 10 min per site", "alerts:total.alerts_per_10min_per_site"),
        ("chattering alerts", "alerts:total.chattering"),
    )),
    Bench("anomaly_skab", (str(PLANTSTREAM_CLI), "bench", "anomaly"), 240, ("anomaly_skab", "anomaly_sim"), (
        ("SKAB F1 (shipped, all files)", "anomaly_skab:pooled.f1"),
        ("SKAB NAB standard (shipped)", "anomaly_skab:pooled.nab_standard"),
        ("SKAB held-out F1 (tuned valve1, on other)", "anomaly_skab:held_out.tuned_valve1_test_other.f1"),
        ("SKAB held-out F1 (tuned other, on valve1)", "anomaly_skab:held_out.tuned_other_test_valve1.f1"),
        ("simulator faults detected (held-out seeds)", "anomaly_sim:pooled.detected"),
        ("simulator false alarms per machine-day", "anomaly_sim:pooled.false_alarms_per_machine_day"),
    )),
)
# bench_pipeline runs Kafka's tools on its own broker and writes kafka.json; make faults runs
# bench_recovery (SIGKILL of each service under load), which would not fit this budget
SKIP = {"bench_kafka", "bench_recovery"}


def plan(only: list[str] | None) -> list[Bench]:
    """PLAN plus any bench/bench_*.py it does not list (defaults, figures from nothing)."""
    listed = {Path(b.argv[0]).stem for b in PLAN if b.argv[0].endswith(".py")}
    extra = [Bench(p.stem.removeprefix("bench_"), (str(p),), 180, ())
             for p in sorted(BENCH.glob("bench_*.py")) if p.stem not in listed | SKIP]
    chosen = [*PLAN, *extra]
    return [b for b in chosen if not only or b.name in only]


def run_one(bench: Bench, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PLANTSTREAM_KAFKA_BOOTSTRAP"}
    print(f"\n=== {bench.name}: {' '.join(bench.argv)} (at most {timeout:.0f}s)", flush=True)
    t0 = time.monotonic()
    cmd = [sys.executable, *bench.argv] if bench.argv[0].endswith(".py") else list(bench.argv)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the script and its children
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        code, status = None, f"stopped after {timeout:.0f}s (time budget)"
    return {"name": bench.name, "status": status, "exit_code": code,
            "seconds": round(time.monotonic() - t0, 1)}


def dig(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def figures(bench: Bench, since: float) -> tuple[dict[str, Any], list[str]]:
    """The bench's key figures from results files written since ``since`` (epoch s)."""
    out, stale = {}, []
    loaded: dict[str, Any] = {}
    for name in bench.results:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists() and path.stat().st_mtime >= since:
            loaded[name] = json.loads(path.read_text())
        else:
            stale.append(name)
    for label, where in bench.figures:
        results, _, path = where.partition(":")
        out[label] = dig(loaded.get(results), path)
    return out, stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for everything")
    ap.add_argument("--only", nargs="+", default=None, help="bench names to run (default all)")
    args = ap.parse_args(argv)
    started, t0 = time.time(), time.monotonic()
    runs, table = [], []
    for bench in plan(args.only):
        left = args.budget - (time.monotonic() - t0) - 5
        if left < 30:
            runs.append({"name": bench.name, "status": "skipped (time budget)", "exit_code": None,
                         "seconds": 0})
            continue
        run = run_one(bench, min(bench.cap_s, left))
        run["figures"], run["stale_results"] = figures(bench, started)
        runs.append(run)
    for run in runs:
        for label, value in run.get("figures", {}).items():
            shown = round(value) if isinstance(value, float) and abs(value) >= 100 else value
            table.append({"bench": run["name"], "figure": label, "value": shown})
    summary = {"benchmark": "make bench", **machine_facts(), "budget_s": args.budget,
               "total_s": round(time.monotonic() - t0, 1), "runs": runs}
    figure_table("benchmarks", [{k: r[k] for k in ("name", "status", "seconds")} for r in runs])
    figure_table("key figures (this run)", table)
    print(f"\ntotal {summary['total_s']}s of {args.budget:.0f}s -> {write_results('summary', summary)}")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
