"""The whole pipeline on this machine: the highest gateway rate it sustains with bounded
consumer lag, end-to-end latency at that rate and at a moderate rate, and that rate as a
share of Kafka's own producer/consumer ceiling measured on the same broker in the same run.

1. A private broker (deploy/local/kafka.sh); Kafka's ProducerPerformance/ConsumerPerformance
   on it (bench_kafka.py) with gateway-batch-sized records.
2. Topics, ClickHouse migrations, the simulator's asset registry; the five services as
   separate processes (plantstream.supervisor) with embedded ClickHouse in a temp folder.
3. Steps at rising rates (a warm-up first): a separate driver process sends pre-generated
   gateway batches paced to the wall clock (pipeline_driver.py), while every service
   group's committed-offset lag is sampled (plantstream.lag). A step is sustained when no
   service's lag grows and each ends within a few seconds of input (pipeline_analysis.py).
   Escalation stops at the first step not sustained.
4. Latency of sampled machines' batches, from the gateway's send to (a) the readings being
   queryable in ClickHouse (readings.archived_at, through the archival service's endpoint)
   and (b) the batch on readings.valid: its message timestamp, and when a read_committed
   consumer saw it (pipeline without archival).

Figures are printed and written to bench/results/pipeline.json (and kafka.json).

    .venv/bin/python bench/bench_pipeline.py [--rates 10000 20000 ...] [--step-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import bench_kafka
from common import BenchError, Deadline, figure_table, machine_facts, terminate, write_results
from pipeline_analysis import LagSample, judge_step, latency_figures
from pipeline_driver import build_factory, sampled_machines
from pipeline_stack import BROKER, Stack, ValidWatcher
from profiling import Profiles, available

from plantstream.db.query import open_target
from plantstream.gateway.simulator import DEFAULT_SITE, DEFAULT_TENANT
from plantstream.lag import off_log_end
from plantstream.localbroker import LocalBroker, LocalBrokerError
from plantstream.settings import Settings
from plantstream.supervisor import SERVICES

DRIVER = Path(__file__).with_name("pipeline_driver.py")
# roughly doubling: few steps to the top, and a first one low enough to pass on a slow pipeline
DEFAULT_RATES = [1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000]
TEARDOWN_S = 35.0  # stopping five services and the broker


def run_step(stack: Stack, args: argparse.Namespace, rate: float, seconds: float, after_us: int,
             tag: str) -> tuple[dict[str, Any], list]:
    """One rate step: pre-generate, send for ``seconds`` while sampling lag; judge it. With
    ``--profile``, the moderate-rate step also samples every service with py-spy."""
    profiles = None
    if args.profile and rate == args.moderate_rate:
        profiles = Profiles(Path(stack.settings.home) / "profiles" / tag)
    out = Path(stack.settings.home) / f"step-{tag}.json"
    cmd = [sys.executable, str(DRIVER), "--rate", str(rate), "--duration", str(seconds), "--machines",
           str(args.machines), "--sample-every", str(args.sample_every), "--start-after-us", str(after_us),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env=stack.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        if not ready.startswith("ready "):
            raise BenchError(f"the gateway driver failed before sending (exit {proc.wait()})")
        cpu0, t0 = stack.cpu_seconds(), time.monotonic()
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        if profiles is not None:
            profiles.start({k: v for k, v in stack.pids().items() if k != BROKER}, max(seconds - 2, 1))
        samples: list[LagSample] = []
        while proc.poll() is None:
            lag, end = stack.lags()
            samples.append(LagSample(time.monotonic() - t0, lag, end))
            time.sleep(max(0.0, args.sample_interval - (time.monotonic() - t0 - samples[-1].t)))
        elapsed, cpu1 = time.monotonic() - t0, stack.cpu_seconds()
        if proc.returncode != 0:
            raise BenchError(f"the gateway driver exited with {proc.returncode}")
        report = json.loads(out.read_text())
    finally:
        terminate(proc)
    verdict = judge_step(samples, stack.services, rate, report["achieved_readings_per_s"])
    profile = profiles.finish() if profiles is not None else None
    dead = [s for s, ok in stack.alive().items() if not ok]
    if dead:
        verdict.update(sustained=False, reason=f"service(s) died: {', '.join(dead)}")
    step = {"target_readings_per_s": rate, "achieved_readings_per_s": report["achieved_readings_per_s"],
            "seconds": round(elapsed, 1), "batches": report["batches"], "readings": report["readings"],
            "driver_behind_max_s": report["behind_max_s"], "pregen_s": report["pregen_s"],
            "timestamp_lag_s": report["clock_offset_s"], **verdict,
            "cpu_cores": {s: round((cpu1[s] - cpu0[s]) / elapsed, 2) for s in cpu1 if s in cpu0},
            # CPU time per reading sent, services and broker: what limits the sustained rate
            "cpu_us_per_reading": {s: round((cpu1[s] - cpu0[s]) / max(report["readings"], 1) * 1e6, 1)
                                   for s in cpu1 if s in cpu0},
            "rss_mb": stack.rss_mb(),
            **({"profile": profile} if profile else {}),
            "lag_series": [[round(x.t, 1), dict(x.lag)] for x in samples], "last_ts_us": report["last_ts_us"]}
    return step, report["samples"]


def archived_arrivals(settings: Settings, machines: set[str], since_us: int) -> dict[tuple[str, int], float]:
    """(machine, reading ts) -> when ClickHouse got it (µs), for the sampled machines."""
    names = ", ".join(f"'{m}'" for m in sorted(machines))
    sql = (f"SELECT machine, toUnixTimestamp64Micro(ts) AS t, toUnixTimestamp64Micro(max(archived_at)) AS a "
           f"FROM readings WHERE tenant = '{DEFAULT_TENANT}' AND site = '{DEFAULT_SITE}' "
           f"AND machine IN ({names}) AND ts >= fromUnixTimestamp64Micro(toInt64({since_us})) "
           f"GROUP BY machine, t")
    target = open_target(settings)
    try:
        table = target.arrow(sql)
    finally:
        target.close()
    cols = [table.column(i).to_pylist() for i in range(3)]
    return {(m, int(t)): float(a) for m, t, a in zip(*cols, strict=True)}


def drain(stack: Stack, deadline: Deadline, limit: float) -> float:
    """Wait (bounded) until every service has caught up; return seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < min(limit, max(0.0, deadline.left() - TEARDOWN_S)):
        lag, end = stack.lags()
        if all(v <= 8 for v in lag.values()):  # transaction markers leave a few per partition
            break
        time.sleep(1.0)
    return round(time.monotonic() - t0, 1)


def pipeline(args: argparse.Namespace, broker: LocalBroker, home: Path,
             deadline: Deadline) -> dict[str, Any]:
    kafka = None
    if not args.no_kafka:
        ks = replace(Settings.from_env(), home=home, kafka_bootstrap=broker.bootstrap,
                     clickhouse_url="chdb://memory", topic_prefix=f"{args.prefix}kafka.")
        kafka = bench_kafka.measure(broker, ks, args.kafka_seconds, args.kafka_records)
        bench_kafka.print_figures(kafka)
    stack = Stack(home, broker.bootstrap, prefix=args.prefix)
    stack.broker_pid = None if args.bootstrap else broker.pid()
    factory = build_factory(args.machines, 11, 1.0, 1.0, 0)
    sampled = sampled_machines(factory, args.sample_every)
    stack.prepare(factory.assets())
    watcher = ValidWatcher(stack.settings, sampled, DEFAULT_TENANT, DEFAULT_SITE)
    try:
        stack.start(tuple(args.services))
        ready_s = stack.wait_ready()
        watcher.start()
        watcher.ready.wait(30)
        print(f"services up in {ready_s:.1f}s; warm-up {args.warmup_rate:,.0f} readings/s "
              f"for {args.warmup_seconds:g}s", flush=True)
        warm, _ = run_step(stack, args, args.warmup_rate, args.warmup_seconds, 0, "warmup")
        after_us, steps, sent = warm["last_ts_us"] + 1_000_000, [], []
        for rate in args.rates:
            need = args.step_seconds + rate * args.step_seconds / 120_000 + 5 + TEARDOWN_S
            if deadline.left() < need:
                print(f"time budget: not starting {rate:,.0f} readings/s", flush=True)
                break
            step, samples = run_step(stack, args, rate, args.step_seconds, after_us, str(rate))
            after_us = step["last_ts_us"] + 1_000_000
            steps.append(step)
            sent.append(samples)
            print_step(step)
            if not step["sustained"]:
                break
        drained = drain(stack, deadline, args.drain_seconds)
        at_end = log_end_check(stack, broker, args.services)
        since = min((s[1] for ss in sent for s in ss), default=0)
        arrived = archived_arrivals(stack.settings, sampled, since) if "archival" in args.services else {}
    finally:
        watcher.stop()
        stack.stop()
    for step, samples in zip(steps, sent, strict=True):
        step["latency_ms"] = {"to_clickhouse": latency_figures(samples, arrived),
                              "to_valid_visible": latency_figures(samples, watcher.visible),
                              "to_valid_message_ts": latency_figures(samples, watcher.message_ts)}
    return summarize(args, kafka, warm, steps, drained) | {"groups_at_log_end": at_end}


def log_end_check(stack: Stack, broker: LocalBroker, services: list[str]) -> dict[str, Any]:
    """After the drain: every service group's committed offset against the log end on every
    input partition, as Kafka's own ConsumerGroupCommand reports it (the check that found the
    two-engine version's stalled partition)."""
    try:
        off = off_log_end(stack.settings, services, lambda a: broker.tool("groups", a, 120))
    except (LocalBrokerError, RuntimeError) as exc:
        print(f"group offsets: not checked ({exc})", flush=True)
        return {"checked": False, "error": str(exc)}
    behind = {s: [f"{r.topic}[{r.partition}] {r.committed}/{r.end}" for r in rows] for s, rows in off.items()}
    ok = not any(behind.values())
    print("group offsets after the drain (Kafka ConsumerGroupCommand): "
          + ("every group at the log end on every partition" if ok else f"NOT at the log end: {behind}"),
          flush=True)
    return {"checked": True, "all_at_end": ok, "behind": {s: b for s, b in behind.items() if b}}


def summarize(args: argparse.Namespace, kafka: dict | None, warm: dict, steps: list[dict],
              drained: float) -> dict[str, Any]:
    ok = [s for s in steps if s["sustained"]]
    best = max(ok, key=lambda s: s["achieved_readings_per_s"], default=None)
    moderate = next((s for s in steps if s["target_readings_per_s"] == args.moderate_rate), None)
    rate = best["achieved_readings_per_s"] if best else 0
    ratio = {}
    if kafka:
        # four significant figures: the ratios are small (~0.005), so fixed decimals lose them
        ratio = {"to_kafka_producer": float(f'{rate / kafka["producer"]["readings_per_s"]:.4g}'),
                 "to_kafka_consumer": float(f'{rate / kafka["consumer"]["readings_per_s"]:.4g}')}
    return {"benchmark": "full pipeline: sustained rate, lag, end-to-end latency", **machine_facts(),
            "params": {k: v for k, v in vars(args).items() if k not in {"out"}},
            "sustained_readings_per_s": rate,
            "sustained_target_readings_per_s": best["target_readings_per_s"] if best else None,
            # throughput kept (no service's lag grew) though some lag exceeded the bound
            "lag_steady_readings_per_s": max((s["achieved_readings_per_s"] for s in steps if s["lag_steady"]),
                                             default=0),
            "first_not_sustained": next(({"target_readings_per_s": s["target_readings_per_s"],
                                          "reason": s["reason"]} for s in steps if not s["sustained"]), None),
            "lag_at_sustained": best["lag"] if best else None,
            "cpu_us_per_reading_at_sustained": best.get("cpu_us_per_reading") if best else None,
            "latency_at_sustained_ms": best["latency_ms"] if best else None,
            "latency_at_moderate_ms": moderate["latency_ms"] if moderate else None,
            "moderate_readings_per_s": args.moderate_rate,
            "ratio": ratio, "kafka": kafka, "warmup": warm, "steps": steps, "drain_s": drained}


def print_step(step: dict[str, Any]) -> None:
    lag = "  ".join(f"{s}={f['final_lag_s']}s/{f['growth_share']:+.2f}" for s, f in step["lag"].items())
    verdict = "sustained" if step["sustained"] else f"NOT sustained ({step['reason']})"
    print(f"step {step['target_readings_per_s']:>9,.0f}/s: "
          f"sent {step['achieved_readings_per_s'] or 0:,.0f}/s "
          f"-> {verdict}; lag s/growth {lag}", flush=True)


def print_figures(res: dict[str, Any]) -> None:
    rows = []
    for s in res["steps"]:
        lat = s.get("latency_ms", {})
        rows.append({"target/s": s["target_readings_per_s"], "sent/s": s["achieved_readings_per_s"],
                     "sustained": s["sustained"],
                     "max final lag s": max((f["final_lag_s"] or 0 for f in s["lag"].values()), default=None),
                     "CH p50 ms": lat.get("to_clickhouse", {}).get("p50"),
                     "CH p99 ms": lat.get("to_clickhouse", {}).get("p99"),
                     "valid p50 ms": lat.get("to_valid_visible", {}).get("p50"),
                     "valid p99 ms": lat.get("to_valid_visible", {}).get("p99"),
                     "cores": round(sum(s["cpu_cores"].values()), 2)})
    figure_table("pipeline steps (latency from gateway send; CH = queryable in ClickHouse)", rows)
    if res["lag_at_sustained"]:
        figure_table(f"per-service lag at the sustained rate "
                     f"({res['sustained_readings_per_s']:,} readings/s)",
                     [{"service": k, **{c: v[c] for c in ("input_msgs_per_s", "final_lag_msgs", "final_lag_s",
                                                          "max_lag_s", "growth_share")}}
                      for k, v in res["lag_at_sustained"].items()])
    best = next((s for s in res["steps"] if s["achieved_readings_per_s"] == res["sustained_readings_per_s"]
                 and s["sustained"]), None)
    if best and best.get("cpu_us_per_reading"):
        figure_table(f"CPU µs per reading and RSS at {res['sustained_readings_per_s']:,} readings/s",
                     [{"process": k, "µs/reading": v, "cores": best["cpu_cores"].get(k),
                       "RSS MiB": best["rss_mb"].get(k)} for k, v in
                      sorted(best["cpu_us_per_reading"].items(), key=lambda kv: -kv[1])]
                     + [{"process": "total", "µs/reading": round(sum(best["cpu_us_per_reading"].values()), 1),
                         "cores": round(sum(best["cpu_cores"].values()), 2), "RSS MiB": None}])
    for s in res["steps"]:
        for svc, prof in (s.get("profile") or {}).items():
            if prof.get("self"):
                figure_table(f"{svc} at {s['target_readings_per_s']:,.0f}/s: own time by function "
                             f"(py-spy, {prof['samples']} samples)",
                             [{"function": f, "share": share} for f, share in prof["self"]])
    print(f"\nsustained: {res['sustained_readings_per_s']:,} readings/s; ratio to Kafka's tools: "
          f"{res['ratio'] or 'n/a'}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=DEFAULT_RATES, help="readings/s, rising")
    ap.add_argument("--step-seconds", type=float, default=25.0)
    ap.add_argument("--moderate-rate", type=float, default=10_000.0)
    ap.add_argument("--warmup-rate", type=float, default=2_000.0)
    ap.add_argument("--warmup-seconds", type=float, default=6.0)
    ap.add_argument("--machines", type=int, default=48)
    ap.add_argument("--sample-every", type=int, default=4, help="latency of every Nth machine's batches")
    ap.add_argument("--sample-interval", type=float, default=2.0, help="seconds between lag samples")
    ap.add_argument("--drain-seconds", type=float, default=30.0)
    ap.add_argument("--services", nargs="+", default=list(SERVICES), choices=SERVICES)
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for the whole run")
    ap.add_argument("--no-kafka", action="store_true", help="skip Kafka's perf tools")
    ap.add_argument("--kafka-seconds", type=float, default=10.0)
    ap.add_argument("--kafka-records", type=int, default=None, help="fixed perf-tool record count")
    ap.add_argument("--profile", action="store_true",
                    help="sample each service with py-spy during the moderate-rate step (top functions)")
    ap.add_argument("--bootstrap", default=None, help="use this broker instead of starting one")
    ap.add_argument("--prefix", default=f"bench-{uuid.uuid4().hex[:6]}.", help="topic prefix")
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default bench/results/pipeline.json)")
    args = ap.parse_args(argv)
    args.rates = sorted({args.moderate_rate, *args.rates})
    if args.profile and not available():
        ap.error("--profile needs py-spy (make install puts it in the venv)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    deadline = Deadline(args.budget)
    home = Path(tempfile.mkdtemp(prefix="plantstream-bench-pipeline-"))
    broker = (LocalBroker.existing(args.bootstrap, home / "kafka-tools") if args.bootstrap
              else LocalBroker.start_new(home))
    try:
        res = pipeline(args, broker, home, deadline)
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)
    res["total_s"] = round(deadline.elapsed(), 1)
    if res["kafka"] and args.out is None:  # a run with its own --out (the smoke test) leaves kafka.json be
        write_results("kafka", {"benchmark": "Kafka producer/consumer ceiling", **machine_facts(),
                                **res["kafka"]})
    print_figures(res)
    print(f"-> {write_results('pipeline', res, args.out)} in {res['total_s']}s")
    return res


if __name__ == "__main__":
    main()
