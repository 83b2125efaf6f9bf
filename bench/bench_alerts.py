"""Alert-quality benchmark: the shipped anomaly and maintenance logic over simulated factory
days with injected faults, judged against the ground truth (bench/alert_quality.py).

    .venv/bin/python bench/bench_alerts.py [--seeds 101 102 103] [--hours 24]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from alert_quality import judge, simulate  # noqa: E402
from common import figure_table, machine_facts, write_results  # noqa: E402

TARGETS = {"every fault alerted": "faults_alerted == faults", "alerts per fault": "<= 1",
           "false alerts per machine-week": "< 1", "alerts per 10 min per site (EEMUA 191)": "< 1"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--faulty", type=int, default=3)
    ap.add_argument("--hours", type=float, default=24.0, help="factory time per seed")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between a sensor's readings")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = []
    for seed in args.seeds:
        t0 = time.monotonic()
        figures = judge(simulate(seed, args.machines, args.faulty, args.hours, args.interval))
        figures.update(seed=seed, seconds=round(time.monotonic() - t0, 1))
        runs.append(figures)
        print(f"seed {seed}: {figures['faults_alerted']}/{figures['faults']} faults alerted, "
              f"{figures['alerts']} alerts, {figures['false_alerts']} false, {figures['seconds']} s",
              flush=True)
    faults = sum(r["faults"] for r in runs)
    alerted = sum(r["faults_alerted"] for r in runs)
    machine_days = args.machines * args.hours / 24 * len(runs)
    false = sum(r["false_alerts"] for r in runs)
    per_fault = [r["alerts_per_alerted_fault"] for r in runs if r["alerts_per_alerted_fault"] is not None]
    leads = sorted(x for r in runs for x in r["lead_time_min"])
    total = {
        "faults": faults, "faults_alerted": alerted,
        "alerts_per_alerted_fault": round(sum(per_fault) / len(per_fault), 2) if per_fault else None,
        "false_alerts_per_machine_week": round(false / machine_days * 7, 2),
        "lead_time_min_median": leads[len(leads) // 2] if leads else None,
        "chattering": sum(r["chattering"] for r in runs),
        "alerts_per_10min_per_site": round(sum(r["alerts_per_10min_per_site"] for r in runs) / len(runs), 3),
        "peak_alerts_per_10min": max(r["peak_alerts_per_10min"] for r in runs),
    }
    figure_table("alert quality per seed", [{k: r[k] for k in (
        "seed", "faults", "faults_alerted", "alerts", "alerts_per_alerted_fault", "false_alerts",
        "chattering", "alerts_per_10min_per_site", "peak_alerts_per_10min")} for r in runs])
    targets = "; ".join(f"{k} {v}" for k, v in TARGETS.items())
    figure_table(f"alert quality, all seeds (targets: {targets})", [total])
    path = write_results("alerts", {"config": vars(args) | {"out": None}, "runs": runs, "total": total,
                                    "targets": TARGETS, "machine": machine_facts()}, args.out)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
