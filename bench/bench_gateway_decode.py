"""Micro-benchmark (one process, no Kafka): decoding gateway_batch messages with fastavro
(a dict per reading) against the column decoder, and ingest's ``Normalizer.normalize``
before/after the column path, on the same simulated messages. Prints µs per reading and the
ratios; writes bench/results/gateway_decode.json.

    .venv/bin/python bench/bench_gateway_decode.py [--batch 120 500] [--machines 40] [--seconds 300]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from tempfile import mkdtemp

from ingest.dedup import SeenBatches
from ingest.normalize import Normalizer
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.gateway.columns import decode_avro_columns
from plantstream.gateway.contract import DEFAULT_LIMITS, encode_gateway_batch
from plantstream.gateway.simulator import Factory
from plantstream.settings import REPO_ROOT, Settings

RESULTS = REPO_ROOT / "bench" / "results" / "gateway_decode.json"


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def one(batch: int, machines: int, seconds: float, rounds: int) -> dict:
    factory = Factory.build(machines, seed=3, horizon=seconds)
    batches = list(factory.batches(batch_size=batch))
    msgs = [encode_gateway_batch(b, "avro") for b in batches]
    n = sum(len(b["readings"]) for b in batches)
    codec = AvroCodec()
    t_fastavro = best_of(rounds, lambda: [codec.decode(v, "gateway_batch") for v, _ in msgs])
    t_columns = best_of(rounds, lambda: [decode_avro_columns(v) for v, _ in msgs])
    assert all(decode_avro_columns(v).to_dict() == codec.decode(v, "gateway_batch") for v, _ in msgs[:50])
    settings = replace(Settings.from_env(), home=Path(mkdtemp(prefix="bench-decode-")))
    registry = AssetRegistry(factory.assets())
    sources = [Source("gw", 0, i, v, h) for i, (v, h) in enumerate(msgs)]

    def normalize_all() -> None:
        norm = Normalizer(registry, SeenBatches(settings), DeadLetters(settings, "ingest"), "out",
                          DEFAULT_LIMITS)
        for s in sources:
            norm.normalize(s, 1_800_000_000_000_000)

    t_norm = best_of(rounds, normalize_all)
    out = {"readings": n, "messages": len(msgs), "fastavro_us_per_reading": round(t_fastavro / n * 1e6, 3),
           "columns_us_per_reading": round(t_columns / n * 1e6, 3),
           "decode_speedup": round(t_fastavro / t_columns, 2),
           "normalize_us_per_reading": round(t_norm / n * 1e6, 3)}
    print(f"batch={batch}: {n:,} readings in {len(msgs)} messages; decode fastavro "
          f"{out['fastavro_us_per_reading']} µs/reading, columns {out['columns_us_per_reading']} µs/reading "
          f"({out['decode_speedup']}x); Normalizer.normalize {out['normalize_us_per_reading']} µs/reading",
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[120, 500])
    ap.add_argument("--machines", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=300.0, help="factory seconds simulated per round")
    ap.add_argument("--rounds", type=int, default=5, help="repetitions; the best is reported")
    args = ap.parse_args()
    result = {str(b): one(b, args.machines, args.seconds, args.rounds) for b in args.batch}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
