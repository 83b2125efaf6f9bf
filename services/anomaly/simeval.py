"""Score the service's detector path on the factory simulator's ground truth.

Why: SKAB has one pump testbed; the platform's machines warm up for tens of minutes, cycle
with load, stop for breaks. This runs the simulator's machines through exactly what the
service runs per machine (:class:`anomaly.state.MachineState`, i.e. row assembly, detector,
episodes) and scores the anomaly episodes against the injected faults:

- a fault is *detected* when an episode of its machine opens inside its window (or up to
  ``grace_s`` after it); *delay* is open time minus fault start; *sensor hit* when the top
  contributing sensor of the opening event is one the fault acts on;
- a *false alarm* is an episode opening on a machine outside every fault window (plus
  grace), reported per machine-hour and per machine-day of scored (post-warm-up) data.

These are the rules of :mod:`anomaly.eventmetrics`, which scores SKAB the same way. The
per-sensor channels (``anomaly.config.SERVICE_WATCH``) were chosen on seeds
:data:`TUNING_SEEDS`; the benchmark reports :data:`HELD_OUT_SEEDS`, which nothing was tuned on.

Faults that start before a machine's warm-up ends are excluded (nothing can alarm then).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from anomaly.eventmetrics import event_figures, match_episodes
from anomaly.machine import MachineDetector
from anomaly.regime import warning_limits
from anomaly.simfeed import reading_batches
from anomaly.state import MachineState

GRACE_S = 60.0
TUNING_SEEDS = (7, 8, 9)  # what the service's sensor channels were chosen on
HELD_OUT_SEEDS = (21, 22)  # what the benchmark reports (never used for tuning)
DEFAULT_FAULTS = (
    "bearing_wear:machine=pump-01,start=5400,duration=3600",
    "overheating:machine=cnc-01,start=6000,duration=3000",
    "cavitation:machine=pump-02,start=7200,duration=1800",
    "stuck_sensor:machine=compressor-01,start=6600,duration=1800",
    "spikes:machine=conveyor-02,start=6000,duration=1800",
    "dropout:machine=cnc-02,start=7000,duration=900",
)


def run_sim(
    new_detector: Callable[[list[str] | None], MachineDetector],
    *, machines: int = 12, seed: int = 7, horizon: float = 4 * 3600.0,
    faults: Sequence[str] = DEFAULT_FAULTS, update_s: float = 60.0,
) -> dict[str, Any]:
    """Run the simulator through per-machine states; return detection and false-alarm figures."""
    from plantstream.gateway.simulator import Factory

    factory = Factory.build(machines=machines, seed=seed, faults=list(faults), horizon=horizon,
                            start_us=1_750_000_000_000_000)
    assets = {(a["tenant"], a["site"], a["machine"]): a for a in factory.assets()}
    states: dict[tuple[str, str, str], MachineState] = {}
    opens: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
    warm_end: dict[tuple[str, str, str], int] = {}
    last_ts: dict[tuple[str, str, str], int] = {}
    rows = 0
    t0 = time.perf_counter()
    for _, rec in reading_batches(factory, until=horizon):
        mid = (rec["tenant"], rec["site"], rec["machine"])
        st = states.get(mid)
        if st is None:
            sensors = sorted(s["sensor"] for s in assets[mid]["sensors"])
            st = states[mid] = MachineState(mid, new_detector(sensors))
            st.detector.set_limits(warning_limits({s["sensor"]: s for s in assets[mid]["sensors"]}))
            st.rows.expected = frozenset(sensors)
        rs = rec["readings"]
        before = st.detector.n_rows
        events = st.feed([r["sensor"] for r in rs], [r["ts"] for r in rs], [r["value"] for r in rs],
                         [r["quality"] for r in rs], int(update_s * 1e6))
        rows += st.detector.n_rows - before
        if mid not in warm_end and st.detector.n_rows >= st.detector.warmup and st.rows.last_ts > 0:
            warm_end[mid] = st.rows.last_ts
        last_ts[mid] = st.rows.last_ts
        for e in events:
            if e["ts"] == e["window_start"] and e["window_end"] == e["ts"] and e["kind"] != "rebaseline":
                opens[mid].append((e["ts"], e["contributions"][0]["sensor"] if e["contributions"] else ""))
    seconds = time.perf_counter() - t0
    return _score(factory.ground_truth(), opens, warm_end, last_ts, rows, seconds,
                  sum(len(a["sensors"]) for a in assets.values()) / max(len(assets), 1), len(assets))


def _score(truth: list[Any], opens: dict, warm_end: dict, last_ts: dict, rows: int, seconds: float,
           sensors_per_machine: float, n_machines: int) -> dict[str, Any]:
    grace = int(GRACE_S * 1e6)
    per_fault = []
    scored_truth: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for w in truth:
        mid = (w.tenant, w.site, w.machine)
        if mid not in warm_end or w.start_us < warm_end[mid]:
            per_fault.append({"machine": w.machine, "kind": w.kind, "excluded": "starts during warm-up"})
            continue
        scored_truth[mid].append(w)
        hits = [(ts, top) for ts, top in opens.get(mid, []) if w.start_us <= ts <= w.end_us + grace]
        first = hits[0] if hits else None
        per_fault.append({
            "machine": w.machine, "kind": w.kind, "sensors": list(w.sensors),
            "detected": first is not None,
            "delay_s": (first[0] - w.start_us) / 1e6 if first else None,
            "top_sensor": first[1] if first else None,
            "sensor_hit": bool(first and first[1] in w.sensors),
        })
    matches = [match_episodes([(w.start_us, w.end_us) for w in scored_truth.get(mid, [])],
                              sorted(ts for ts, _ in opens.get(mid, []) if ts >= warm_end[mid]), grace)
               for mid in warm_end]
    scored_us = sum(max(0, last_ts[m] - warm_end[m]) for m in warm_end)
    events = event_figures(matches, scored_us)
    scored_h = scored_us / 3.6e9
    scored = [f for f in per_fault if "excluded" not in f]
    det = [f for f in scored if f["detected"]]
    delays = [f["delay_s"] for f in det]
    return {
        "machines": n_machines, "faults": len(truth), "faults_scored": len(scored),
        "detected": len(det), "recall": len(det) / len(scored) if scored else 0.0,
        "sensor_hits": sum(f["sensor_hit"] for f in det),
        "delay_s_median": statistics.median(delays) if delays else None,
        "delay_s_max": max(delays) if delays else None,
        "false_alarms": events["false_alarm_episodes"], "scored_machine_hours": scored_h,
        "false_alarms_per_machine_hour": events["false_alarm_episodes"] / scored_h if scored_h else 0.0,
        "events": events,
        "per_fault": per_fault,
        "speed": {"rows": rows, "seconds": seconds,
                  "readings_per_s": rows * sensors_per_machine / seconds if seconds else 0.0},
    }


def format_report(res: dict[str, Any]) -> str:
    """Readable per-fault table and totals."""
    lines = [f"{'machine':<16}{'fault':<14}{'detected':>9}{'delay s':>9}  top sensor"]
    for f in res["per_fault"]:
        if "excluded" in f:
            lines.append(f"{f['machine']:<16}{f['kind']:<14}  ({f['excluded']})")
            continue
        delay = "" if f["delay_s"] is None else f"{f['delay_s']:.0f}"
        hit = "" if f["top_sensor"] is None else f"{f['top_sensor']} ({'ok' if f['sensor_hit'] else 'other'})"
        found = "yes" if f["detected"] else "no"
        lines.append(f"{f['machine']:<16}{f['kind']:<14}{found:>9}{delay:>9}  {hit}")
    lines += [
        "-" * 60,
        f"detected {res['detected']}/{res['faults_scored']} faults (sensor right in {res['sensor_hits']}), "
        f"median delay {res['delay_s_median']} s",
        f"false alarms: {res['false_alarms']} in {res['scored_machine_hours']:.1f} machine-hours "
        f"= {res['false_alarms_per_machine_hour']:.2f} per machine-hour "
        f"= {res['events']['false_alarms_per_machine_day']:.1f} per machine-day; "
        f"mean delay {_num(res['events']['delay_s_mean'])} s",
        f"speed: {res['speed']['readings_per_s']:,.0f} readings/s",
    ]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def format_seeds(res: dict[str, Any]) -> str:
    """One line with the pooled figures of :func:`run_seeds`."""
    p, m = res["pooled"], res["mean"]
    return (f"seeds {res['seeds']}: detected {p['detected']}/{p['episodes']} faults, "
            f"sensor right {m['sensor_hits']:.2f} per seed, mean delay {_num(p['delay_s_mean'])} s, "
            f"{p['false_alarm_episodes']} false-alarm episodes in {p['machine_days']:.2f} machine-days "
            f"= {p['false_alarms_per_machine_day']:.1f} per machine-day, "
            f"{m['readings_per_s']:,.0f} readings/s")


def run_seeds(new_detector: Callable[[list[str] | None], MachineDetector], seeds: Sequence[int],
              **kw: Any) -> dict[str, Any]:
    """:func:`run_sim` for several simulator seeds, with the means of the headline figures."""
    runs = {seed: run_sim(new_detector, seed=seed, **kw) for seed in seeds}
    delays = [r["delay_s_median"] for r in runs.values() if r["delay_s_median"] is not None]
    pooled_delays = [f["delay_s"] for r in runs.values() for f in r["per_fault"] if f.get("detected")]
    ev = [r["events"] for r in runs.values()]
    days = sum(e["machine_days"] for e in ev)
    false = sum(e["false_alarm_episodes"] for e in ev)
    pooled = {
        "episodes": sum(e["episodes"] for e in ev), "detected": sum(e["detected"] for e in ev),
        "delay_s_mean": statistics.fmean(pooled_delays) if pooled_delays else None,
        "false_alarm_episodes": false, "machine_days": days,
        "false_alarms_per_machine_day": false / days if days else 0.0,
    }
    mean = {
        "detected": statistics.mean(r["detected"] for r in runs.values()),
        "faults_scored": statistics.mean(r["faults_scored"] for r in runs.values()),
        "sensor_hits": statistics.mean(r["sensor_hits"] for r in runs.values()),
        "delay_s_median": statistics.mean(delays) if delays else None,
        "false_alarms_per_machine_hour": statistics.mean(
            r["false_alarms_per_machine_hour"] for r in runs.values()),
        "false_alarms_per_machine_day": statistics.mean(
            r["events"]["false_alarms_per_machine_day"] for r in runs.values()),
        "readings_per_s": statistics.mean(r["speed"]["readings_per_s"] for r in runs.values()),
    }
    return {"seeds": list(seeds), "pooled": pooled, "mean": mean,
            "runs": {str(k): v for k, v in runs.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the service's detector (settings from PLANTSTREAM_* env) on several seeds."""
    import argparse
    import json
    from pathlib import Path

    from anomaly.config import detector_factory
    from plantstream.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m anomaly.simeval", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default=",".join(map(str, TUNING_SEEDS)),
                    help="comma-separated simulator seeds (default: the tuning seeds)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2]
                    / "bench/results/anomaly_sim_seeds.json")
    args = ap.parse_args(argv)
    res = run_seeds(detector_factory(Settings.from_env()), [int(s) for s in args.seeds.split(",")])
    for seed, r in res["runs"].items():
        print(f"== seed {seed}\n{format_report(r)}")
    print(f"== {format_seeds(res)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
