"""Benchmark: how fast the factory simulator generates gateway batches, and what encoding and
decoding them through the gateway contract costs (the ingest hot path).

Prints readings/s and writes bench/results/simulator.json. The baseline, measured in the same
process, is the floor for any batch producer in Python: building the same number of reading
dicts from ready-made lists; the ratio says how close generation (physics included) gets.

    .venv/bin/python bench/bench_simulator.py [--machines 50] [--duration 600]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from plantstream.gateway.contract import decode_gateway_message, encode_gateway_batch
from plantstream.gateway.simulator import Factory

RESULTS = Path(__file__).resolve().parent / "results" / "simulator.json"


def rate(readings: int, seconds: float) -> float:
    return readings / seconds if seconds > 0 else float("inf")


def generate(machines: int, duration: float, batch_size: int) -> tuple[list[dict], float]:
    factory = Factory.build(machines, seed=1, faulty=machines // 5, horizon=duration,
                            start_us=1_777_636_800_000_000)
    t0 = time.perf_counter()
    batches = list(factory.batches(batch_size=batch_size))
    return batches, time.perf_counter() - t0


def baseline(batches: list[dict]) -> float:
    """Build the same reading dicts from plain lists: the Python floor."""
    cols = [([r["tag"] for r in b["readings"]], [r["ts"] for r in b["readings"]],
             [r["value"] for r in b["readings"]], [r["unit"] for r in b["readings"]]) for b in batches]
    t0 = time.perf_counter()
    for tags, ts, vals, units in cols:
        _ = [{"tag": g, "ts": s, "value": v, "unit": u, "quality": 192}
             for g, s, v, u in zip(tags, ts, vals, units, strict=True)]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--duration", type=float, default=600.0, help="virtual seconds")
    args = ap.parse_args()
    result: dict = {"machines": args.machines, "virtual_seconds": args.duration,
                    "python": platform.python_version(), "load_average_1m": os.getloadavg()[0],
                    "generate": {}, "contract": {}}
    for batch_size in (100, 500):
        batches, seconds = generate(args.machines, args.duration, batch_size)
        readings = sum(len(b["readings"]) for b in batches)
        floor = baseline(batches)
        result["generate"][str(batch_size)] = {
            "readings": readings, "batches": len(batches), "readings_per_s": round(rate(readings, seconds)),
            "baseline_dicts_per_s": round(rate(readings, floor)),
            "ratio_to_baseline": round(floor / seconds, 3)}
        print(f"generate batch_size={batch_size}: {rate(readings, seconds):,.0f} readings/s "
              f"({readings} readings, {len(batches)} batches); baseline dict building "
              f"{rate(readings, floor):,.0f}/s, generation at {floor / seconds:.0%} of it")
        if batch_size != 100:
            continue
        for fmt in ("avro", "json"):
            t0 = time.perf_counter()
            encoded = [encode_gateway_batch(b, fmt) for b in batches]
            enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            for value, headers in encoded:
                decode_gateway_message(value, headers)
            dec = time.perf_counter() - t0
            size = sum(len(v) for v, _ in encoded) / readings
            result["contract"][fmt] = {"encode_readings_per_s": round(rate(readings, enc)),
                                       "decode_readings_per_s": round(rate(readings, dec)),
                                       "bytes_per_reading": round(size, 1)}
            print(f"{fmt:4s} batch_size=100: encode {rate(readings, enc):,.0f} readings/s, "
                  f"decode {rate(readings, dec):,.0f} readings/s, {size:.1f} bytes/reading")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"(load average {result['load_average_1m']:.1f} on {os.cpu_count()} cores) -> {RESULTS}")


if __name__ == "__main__":
    main()
