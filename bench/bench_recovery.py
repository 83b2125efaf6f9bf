"""How long each service takes to recover after a SIGKILL, with gateways sending throughout.

The platform runs as the pipeline benchmark runs it (own broker, the services as separate
processes, embedded ClickHouse). While a driver sends at a steady rate, each service in turn
(downstream first, as in the e2e crash test) is SIGKILLed and started again at once, and two
times are taken from the restart:

- **rejoined**: the new process logs ``partitions assigned`` (it has joined its group and
  owns input again; the dead member's partitions are held until its session times out);
- **caught up**: its group's committed offsets have moved past where they stood at the kill
  and its lag is back within its own level of the seconds before the kill (the peak lag of
  the normal commit saw-tooth, at least a few messages for transaction markers). A service
  whose input got nothing new meanwhile (the notifier, when no alert came) has no figure.

After the last service, the groups are drained and checked at the log end on every
partition (Kafka's ConsumerGroupCommand). Figures are printed and written to
bench/results/recovery.json.

    .venv/bin/python bench/bench_recovery.py [--rate 4000] [--services archival anomaly]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import BenchError, Deadline, figure_table, machine_facts, terminate, write_results
from pipeline_driver import build_factory
from pipeline_stack import Stack

from plantstream import supervisor
from plantstream.lag import group_lags, off_log_end
from plantstream.localbroker import LocalBroker, LocalBrokerError

DRIVER = Path(__file__).with_name("pipeline_driver.py")
KILL_ORDER = ("archival", "maintenance", "anomaly", "validation", "ingest", "notifier")
MIN_LEVEL_MSGS = 8  # transaction markers keep a few offsets per partition past the last commit


def log_lines(stack: Stack, service: str) -> list[str]:
    try:
        return (stack.settings.home / "logs" / f"{service}-0.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


def recover_one(stack: Stack, service: str, before_s: float, limit_s: float) -> dict[str, Any]:
    """Watch ``service`` for ``before_s``, SIGKILL it, start it again, time its recovery."""
    level, t_end = 0, time.monotonic() + before_s
    while time.monotonic() < t_end:
        level = max(level, next(g.lag for g in group_lags(stack.settings, [service])))
        time.sleep(0.25)
    level = max(level, MIN_LEVEL_MSGS)
    at_kill = next(g for g in group_lags(stack.settings, [service]))
    pid = stack.pids()[service]
    os.kill(pid, signal.SIGKILL)
    while any(p.pid == pid and p.alive for p in supervisor.status(stack.settings)):
        time.sleep(0.02)
    lines_before = len(log_lines(stack, service))
    supervisor.start(stack.settings, service, env=stack.env())
    t0 = time.monotonic()
    rejoined = caught_up = None
    peak = 0
    while time.monotonic() - t0 < limit_s and (rejoined is None or caught_up is None):
        now = time.monotonic() - t0
        if rejoined is None and any('"partitions assigned"' in line
                                    for line in log_lines(stack, service)[lines_before:]):
            rejoined = round(now, 2)
        g = next(g for g in group_lags(stack.settings, [service]))
        peak = max(peak, g.lag)
        if caught_up is None and g.committed > at_kill.committed and g.lag <= level:
            caught_up = round(now, 2)
        if caught_up is None and g.end == at_kill.end and rejoined is not None and now > 15:
            break  # nothing new to read: no catch-up to time
        time.sleep(0.1)
    got_input = next(g for g in group_lags(stack.settings, [service])).end > at_kill.end
    return {"service": service, "rejoined_s": rejoined, "caught_up_s": caught_up if got_input else None,
            "level_msgs": level, "lag_at_kill_msgs": at_kill.lag, "peak_lag_msgs": peak,
            "got_input": got_input}


def run(args: argparse.Namespace, broker: LocalBroker, home: Path, deadline: Deadline) -> dict[str, Any]:
    """The trials; the services are stopped however they end (a service that died, a driver
    that failed, Ctrl-C), not left running against a broker that is going away."""
    stack = Stack(home, broker.bootstrap, prefix=args.prefix)
    factory = build_factory(args.machines, 11, 1.0, 1.0, 0)
    stack.prepare(factory.assets())
    stack.start()
    try:
        return trials_then_drain(args, broker, stack, deadline)
    finally:
        stack.stop()


def trials_then_drain(args: argparse.Namespace, broker: LocalBroker, stack: Stack,
                      deadline: Deadline) -> dict[str, Any]:
    home = stack.settings.home
    ready_s = stack.wait_ready()
    duration = args.before_seconds * 2 + len(args.services) * (args.before_seconds + args.limit_seconds)
    out = home / "driver.json"
    cmd = [sys.executable, str(DRIVER), "--rate", str(args.rate), "--duration", str(duration),
           "--machines", str(args.machines), "--out", str(out)]
    driver = subprocess.Popen(cmd, env=stack.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    trials = []
    try:
        if not driver.stdout.readline().startswith("ready "):  # type: ignore[union-attr]
            raise BenchError(f"the gateway driver failed before sending (exit {driver.wait()})")
        driver.stdin.write("go\n")  # type: ignore[union-attr]
        driver.stdin.flush()  # type: ignore[union-attr]
        print(f"services up in {ready_s:.1f}s; sending {args.rate:,.0f} readings/s", flush=True)
        time.sleep(args.before_seconds)  # past start-up: every group at its working level
        for service in args.services:
            if deadline.left() < args.before_seconds + args.limit_seconds + 60:
                print(f"time budget: {service} not killed", flush=True)
                break
            trial = recover_one(stack, service, args.before_seconds, args.limit_seconds)
            trials.append(trial)
            print(f"{service}: SIGKILL, restarted; rejoined {trial['rejoined_s']}s, "
                  f"caught up {trial['caught_up_s']}s (peak lag {trial['peak_lag_msgs']} msgs)", flush=True)
            dead = [s for s, ok in stack.alive().items() if not ok]
            if dead:
                raise BenchError(f"service(s) died: {', '.join(dead)}\n{stack.log_tail(dead[0])}")
    finally:
        terminate(driver)
    at_end = drained_at_log_end(stack, broker, deadline)
    return {"benchmark": "recovery after SIGKILL, under load", **machine_facts(),
            "params": {k: v for k, v in vars(args).items() if k != "out"},
            "session_timeout_s": stack.settings.group_session_seconds, "trials": trials,
            "groups_at_log_end": at_end}


def drained_at_log_end(stack: Stack, broker: LocalBroker, deadline: Deadline) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < min(60, max(deadline.left() - 30, 0)):
        if all(v <= MIN_LEVEL_MSGS for v in stack.lags()[0].values()):
            break
        time.sleep(1.0)
    try:
        off = off_log_end(stack.settings, stack.services, lambda a: broker.tool("groups", a, 120))
    except (LocalBrokerError, RuntimeError) as exc:
        return {"checked": False, "error": str(exc)}
    behind = {s: [f"{r.topic}[{r.partition}] {r.committed}/{r.end}" for r in rows] for s, rows in off.items()}
    return {"checked": True, "all_at_end": not any(behind.values()),
            "behind": {s: b for s, b in behind.items() if b}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=4_000.0, help="readings/s sent throughout")
    ap.add_argument("--machines", type=int, default=48)
    ap.add_argument("--services", nargs="+", default=list(KILL_ORDER), choices=KILL_ORDER)
    ap.add_argument("--before-seconds", type=float, default=6.0, help="watched before each kill")
    ap.add_argument("--limit-seconds", type=float, default=45.0, help="longest wait for one recovery")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    ap.add_argument("--prefix", default=f"bench-{uuid.uuid4().hex[:6]}.", help="topic prefix")
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default bench/results/recovery.json)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    deadline = Deadline(args.budget)
    home = Path(tempfile.mkdtemp(prefix="plantstream-bench-recovery-"))
    broker = LocalBroker.start_new(home)
    try:
        res = run(args, broker, home, deadline)
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)
    res["total_s"] = round(deadline.elapsed(), 1)
    figure_table(f"recovery after SIGKILL at {args.rate:,.0f} readings/s (seconds from the restart; "
                 f"group session timeout {res['session_timeout_s']:g}s)",
                 [{k: t[k] for k in ("service", "rejoined_s", "caught_up_s", "peak_lag_msgs", "level_msgs")}
                  for t in res["trials"]])
    at_end = res["groups_at_log_end"]
    print("groups after the drain: " + ("every group at the log end on every partition"
                                        if at_end.get("all_at_end") else f"NOT at the log end: {at_end}"))
    print(f"-> {write_results('recovery', res, args.out)} in {res['total_s']}s")
    print(json.dumps({t["service"]: t["caught_up_s"] for t in res["trials"]}))
    return res


if __name__ == "__main__":
    main()
