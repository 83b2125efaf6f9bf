"""The fault-injection report ``make faults`` prints: one line per trial the fault tests ran
(``tests/e2e``, recorded through PLANTSTREAM_FAULT_REPORT), with the faults injected and what
was lost, doubled or left behind; totals in bench/results/faults.json.

    .venv/bin/python bench/fault_report.py bench/results/faults.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import figure_table, machine_facts, write_results


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    def doubled(t: dict[str, Any]) -> int:
        return t["readings_doubled"] + sum(t["rows_doubled"].values()) + t["notifications_doubled"]

    return {
        "benchmark": "fault injection (make faults)", **machine_facts(),
        "trials": len(trials), "faults_injected": sum(len(t["faults"]) for t in trials),
        "readings_sent": sum(t["readings_sent"] for t in trials),
        "readings_lost": sum(t["readings_lost"] for t in trials),
        "rows_doubled": sum(doubled(t) for t in trials),
        "rollup_rows_off": sum(abs(v) for t in trials for v in t["rollup_shortfall"].values()),
        "anomaly_machines_differing": sum(len(t["anomaly_machines_differing"]) for t in trials),
        "groups_off_log_end": sum(len(t["groups_off_log_end"]) for t in trials),
        "per_trial": trials,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="JSON lines written by the fault tests")
    args = ap.parse_args(argv)
    if not args.report.exists():
        print(f"no fault trials recorded in {args.report}", file=sys.stderr)
        return 1
    trials = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
    res = summarize(trials)
    figure_table("fault trials (every reading sent, against ClickHouse and a no-fault reference)", [
        {"trial": t["trial"], "faults": len(t["faults"]), "readings": t["readings_sent"],
         "lost": t["readings_lost"], "doubled": t["readings_doubled"] + sum(t["rows_doubled"].values()),
         "rollups off": sum(abs(v) for v in t["rollup_shortfall"].values()),
         "anomaly events": f'{t["anomaly_events"]}/{t["anomaly_events_reference"]}',
         "groups off end": len(t["groups_off_log_end"])} for t in trials])
    for t in trials:
        print(f"  {t['trial']}: " + "; ".join(t["faults"]))
    print(f"\n{res['trials']} trials, {res['faults_injected']} faults injected, {res['readings_sent']:,} "
          f"readings sent: {res['readings_lost']} lost, {res['rows_doubled']} rows doubled, "
          f"{res['rollup_rows_off']} rollup rows off, {res['groups_off_log_end']} groups off the log end")
    print(f"-> {write_results('faults', res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
