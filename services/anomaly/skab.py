"""SKAB benchmark of :class:`~anomaly.machine.MachineDetector` under the README protocol.

Protocol (``../shared/datasets/skab/README.md``): every file of ``valve1/``, ``valve2/`` (if
present) and ``other/`` is streamed in row order through a fresh detector (one machine, 8
sensors); the first 400 rows are warm-up (learning only); rows after them are scored.
Outlier detection: all scored rows of all files are pooled for F1, FAR = FP / actual
negatives and MAR = FN / actual positives; per-file figures are reported too.

Changepoint detection: NAB scoring, standard profile (A_tp = 1, A_fp = -0.11, A_fn = -1).
A window of 60 s starts at each labelled changepoint in the scored part (overlapping windows
are merged). Detections are the rows where the alarm state changes (opens *or* closes: SKAB
labels both the start and the end of an episode as changepoints). In a window, only the
first detection counts, worth ``A_tp * s(p)`` with the NAB scaled sigmoid
``s(p) = 2 / (1 + exp(5 p)) - 1`` and ``p`` = relative position in the window (-1 at its
start, 0 at its end). A detection outside every window is a false positive worth
``A_fp * (-s(p))`` weighting by ``p`` = distance after the end of the previous window in
window lengths (full ``A_fp`` if no window precedes it). A window without detection costs
``A_fn``. Scores are summed over files and normalised so the null detector (never alarms)
scores 0 and the perfect detector (detects at the start of every window) 100. This mirrors
NAB's sweeper for binary alarms (no threshold sweep); published NAB figures come from other
implementations, so compare with care.

Speed is the time spent inside ``process_many`` (CSV parsing excluded); memory is the size
of the pickled detector at the end of each file.

Run: ``python -m anomaly.skab [--data-dir DIR] [--out bench/results/anomaly_skab.json]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anomaly.machine import MachineDetector

SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)
WARMUP_ROWS = 400
NAB_WINDOW_S = 60.0
A_TP, A_FP, A_FN = 1.0, 0.11, 1.0  # NAB standard profile (A_fp and A_fn are penalties)
SUBDIRS = ("valve1", "valve2", "other")
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """``$PLANTSTREAM_SKAB_DIR`` or ``<repo>/../shared/datasets/skab`` (never in the repo)."""
    env = os.environ.get("PLANTSTREAM_SKAB_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets" / "skab"


def list_files(data_dir: Path) -> list[Path]:
    """Labelled experiment files in a stable order (valve1, valve2, other; numeric)."""
    out: list[Path] = []
    for sub in SUBDIRS:
        d = data_dir / sub
        if d.is_dir():
            out += sorted(d.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
    return out


def load_file(path: Path) -> tuple[list[tuple[int, dict[str, float]]], list[int], list[int]]:
    """Rows ``(ts_micros, {sensor: value})``, anomaly labels and changepoint labels."""
    rows: list[tuple[int, dict[str, float]]] = []
    labels: list[int] = []
    cps: list[int] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        for rec in reader:
            ts = datetime.fromisoformat(rec["datetime"]).replace(tzinfo=UTC)
            rows.append((int(ts.timestamp()) * 1_000_000, {k: float(rec[k]) for k in SENSORS}))
            labels.append(int(float(rec["anomaly"])))
            cps.append(int(float(rec["changepoint"])))
    return rows, labels, cps


def _scaled_sigmoid(p: float) -> float:
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def nab_windows(ts: Sequence[int], cps: Sequence[int], start: int) -> list[tuple[float, float]]:
    """Merged ``[t, t + 60 s]`` windows (seconds) for labelled changepoints at rows >= start."""
    wins: list[list[float]] = []
    for i in range(start, len(ts)):
        if cps[i]:
            t = ts[i] / 1e6
            if wins and t <= wins[-1][1]:
                wins[-1][1] = t + NAB_WINDOW_S
            else:
                wins.append([t, t + NAB_WINDOW_S])
    return [(a, b) for a, b in wins]


def nab_raw(windows: Sequence[tuple[float, float]], detections: Sequence[float]) -> float:
    """Raw NAB score (standard profile) of detection times against windows."""
    score = 0.0
    hit = [False] * len(windows)
    for t in sorted(detections):
        inside = None
        prev = None
        for j, (a, b) in enumerate(windows):
            if a <= t <= b:
                inside = j
                break
            if b < t:
                prev = j
        if inside is not None:
            if not hit[inside]:
                a, b = windows[inside]
                hit[inside] = True
                score += A_TP * _scaled_sigmoid(-(b - t) / (b - a))
        elif prev is not None:
            a, b = windows[prev]
            score += A_FP * _scaled_sigmoid((t - b) / (b - a))
        else:
            score -= A_FP
    score -= A_FN * hit.count(False)
    return score


def nab_normalised(raw: float, n_windows: int) -> float:
    """0 = null detector, 100 = perfect detector (first instant of every window)."""
    null = -A_FN * n_windows
    perfect = A_TP * _scaled_sigmoid(-1.0) * n_windows
    return 100.0 * (raw - null) / (perfect - null) if n_windows else 0.0


def _rates(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "far": fp / (fp + tn) if fp + tn else 0.0,
        "mar": fn / (fn + tp) if fn + tp else 0.0,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def run_skab(
    data_dir: Path | None = None,
    detector_factory: Callable[[], MachineDetector] | None = None,
    files: Sequence[Path] | None = None,
    warmup: int = WARMUP_ROWS,
) -> dict[str, Any]:
    """Run the protocol; return a JSON-able dict (pooled, per-file, speed, memory)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    factory = detector_factory or (lambda: MachineDetector(sensors=SENSORS, warmup=warmup))
    paths = list(files) if files is not None else list_files(data_dir)
    if not paths:
        raise FileNotFoundError(f"no SKAB csv files under {data_dir}")
    per_file = []
    tot = [0, 0, 0, 0]
    base = [0, 0, 0, 0]
    nab_sum, nab_windows_total = 0.0, 0
    seconds, n_rows, mem = 0.0, 0, []
    config = ""
    for path in paths:
        rows, labels, cps = load_file(path)
        det = factory()
        config = config or _describe(det)
        t0 = time.perf_counter()
        verdicts = det.process_many(rows)
        seconds += time.perf_counter() - t0
        n_rows += len(rows)
        mem.append(det.memory_bytes())
        c = [0, 0, 0, 0]
        for v, y in zip(verdicts[warmup:], labels[warmup:], strict=True):
            c[(0 if v.is_anomaly else 2) + (0 if y else 1)] += 1
        b = [sum(labels[warmup:]), len(labels[warmup:]) - sum(labels[warmup:]), 0, 0]
        tot = [p + q for p, q in zip(tot, c, strict=True)]
        base = [p + q for p, q in zip(base, b, strict=True)]
        ts = [r[0] for r in rows]
        wins = nab_windows(ts, cps, warmup)
        dets = [ts[i] / 1e6 for i in range(warmup, len(rows)) if verdicts[i].state_changed]
        raw = nab_raw(wins, dets)
        nab_sum += raw
        nab_windows_total += len(wins)
        rel = path.relative_to(data_dir) if path.is_relative_to(data_dir) else path
        per_file.append({
            "file": str(rel), "rows": len(rows), "scored": len(rows) - warmup,
            **_rates(*c), "nab_raw": raw, "nab": nab_normalised(raw, len(wins)),
            "windows": len(wins), "detections": len(dets),
        })
    return {
        "benchmark": "SKAB outlier + changepoint (online, README protocol)",
        "data_dir": str(data_dir),
        "files": len(paths),
        "warmup_rows": warmup,
        "detector": config,
        "pooled": {**_rates(*tot), "nab_standard": nab_normalised(nab_sum, nab_windows_total),
                   "nab_windows": nab_windows_total},
        "baseline_all_anomaly": _rates(*base),
        "per_file": per_file,
        "speed": {"rows": n_rows, "seconds": seconds,
                  "rows_per_s": n_rows / seconds if seconds else 0.0,
                  "readings_per_s": n_rows * len(SENSORS) / seconds if seconds else 0.0},
        "memory": {"sensors": len(SENSORS), "bytes_per_machine_max": max(mem),
                   "bytes_per_machine_mean": sum(mem) / len(mem)},
    }


def _describe(det: MachineDetector) -> dict[str, Any]:
    return {
        "model": det.model_name, "version": det.model_version, "warmup": det.warmup,
        "settle": det.settle, "smoothing": det.smoothing, "univariate": repr(det.univariate),
        "multivariate": repr(det.multivariate), "multivariate_weight": det.multivariate_weight,
        "threshold": {k: getattr(det.threshold, k) for k in
                      ("q", "factor", "window", "k_on", "n_on", "m_off")},
        "calibration_q": det.calibration_q, "learn_after_warmup": det.learn_after_warmup,
    }


def format_table(res: dict[str, Any]) -> str:
    """Readable per-file and pooled table."""
    lines = [f"{'file':<16}{'rows':>6}{'F1':>7}{'FAR%':>7}{'MAR%':>7}{'NAB':>8}{'det':>5}"]
    for f in res["per_file"]:
        lines.append(f"{f['file']:<16}{f['rows']:>6}{f['f1']:>7.3f}{100 * f['far']:>7.1f}"
                     f"{100 * f['mar']:>7.1f}{f['nab']:>8.1f}{f['detections']:>5}")
    p, b, s, m = res["pooled"], res["baseline_all_anomaly"], res["speed"], res["memory"]
    lines += [
        "-" * 56,
        f"{'POOLED':<16}{'':>6}{p['f1']:>7.3f}{100 * p['far']:>7.1f}{100 * p['mar']:>7.1f}"
        f"{p['nab_standard']:>8.1f}",
        f"{'all-anomaly':<16}{'':>6}{b['f1']:>7.3f}{100 * b['far']:>7.1f}{100 * b['mar']:>7.1f}",
        f"speed: {s['rows_per_s']:,.0f} rows/s = {s['readings_per_s']:,.0f} readings/s",
        f"memory: {m['bytes_per_machine_max']:,} bytes/machine max ({m['sensors']} sensors)",
        "published (offline): Conv-AE F1 0.78 FAR 13.55%; MSET 0.78 / 39.73%; T2+Q 0.76 / 26.62%",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: print the table and write the JSON result."""
    ap = argparse.ArgumentParser(prog="python -m anomaly.skab", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=default_data_dir())
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/anomaly_skab.json")
    args = ap.parse_args(argv)
    res = run_skab(args.data_dir)
    print(format_table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
