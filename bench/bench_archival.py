"""Archival benchmark on the embedded ClickHouse engine (chDB), standalone:

    .venv/bin/python bench/bench_archival.py [--readings 10000000]

1. Insert throughput into ``readings`` (rollup views attached) through the service's insert
   path (Arrow block, deduplication token) against a row-list insert of the same rows in the
   same run; and the whole sink path (Avro decode -> columns -> Arrow -> insert).
2. Ingest rate while a second engine handle runs reports (query endpoint's situation).
3. 10M synthetic readings (3 tenants x 200 machines x 10 sensors at 1 Hz) written through
   the same insert path, plus anomalies, alert revisions and dead letters; then bytes on disk
   per reading and the latency of each canned report and of the resume-position lookup.
Figures are printed and written to bench/results/archival.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "libs"), str(ROOT / "services")]

from archival.sink import insert_block, plan_runs, resume_positions  # noqa: E402
from archival.tables import ARROW_SCHEMAS, ROUTES, Source  # noqa: E402
from plantstream.avro import AvroCodec  # noqa: E402
from plantstream.db import connect, migrate, reports  # noqa: E402
from plantstream.db.query import SessionTarget  # noqa: E402
from plantstream.db.readonly import AnalystSession, Scope  # noqa: E402

NOW_US = time.time_ns() // 1000
TENANTS, MACHINES, SENSORS = 3, 200, 10
SERIES = TENANTS * MACHINES * SENSORS
SAMPLE_US = 1_000_000  # every sensor sampled once a second: 10M readings = 28 minutes of 6000 sensors
ROUTE_BY_TOPIC = {r.topic: r for r in ROUTES}


def synthetic_block(start: int, n: int, interval_us: int, total: int) -> pa.Table:
    """Readings ``start..start+n`` of ``total``: every series sampled each ``interval_us``,
    interleaved in time order like a live feed, ending now."""
    idx = np.arange(start, start + n, dtype=np.int64)
    series = idx % SERIES
    step = idx // SERIES
    tenant_i, rest = np.divmod(series, MACHINES * SENSORS)
    machine_i, sensor_i = np.divmod(rest, SENSORS)
    ts = NOW_US - (total // SERIES + 1) * interval_us + step * interval_us
    value = 50 + 10 * np.sin(step / 50 + sensor_i) + np.random.default_rng(start).normal(0, 1, n)
    tenants = pa.array([f"tenant{t}" for t in range(TENANTS)])
    machines = pa.array([f"m{m:03d}" for m in range(MACHINES)])
    sensors = pa.array([f"s{s}" for s in range(SENSORS)])
    batch_no = idx // 100
    reading_id = pa.array(
        [f"gw{b}-{k}" for b, k in zip(batch_no.tolist(), (idx % 100).tolist(), strict=True)]
    )
    cols = {
        "tenant": tenants.take(pa.array(tenant_i)),
        "site": pa.array(["site1"] * n),
        "machine": machines.take(pa.array(machine_i)),
        "sensor": sensors.take(pa.array(sensor_i)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "value": pa.array(value),
        "unit": pa.array(["degC"] * n),
        "quality": pa.array(np.full(n, 192, np.int32)),
        "reading_id": reading_id,
        "gateway": pa.array(["gw1"] * n),
        "ingest_time": pa.array(ts + 2_000_000, pa.timestamp("us", tz="UTC")),
        "kafka_partition": pa.array((series % 4).astype(np.uint16)),
        "kafka_offset": pa.array(batch_no.astype(np.uint64)),
    }
    return pa.table(cols, schema=ARROW_SCHEMAS["readings"])


def bench_insert(client, rows: int) -> dict:
    """Best of three for each Arrow variant (the machine is shared), one row-list run."""
    block = synthetic_block(0, rows, SAMPLE_US, rows)
    client.command("CREATE TABLE IF NOT EXISTS readings_no_rollups AS readings")
    raw_only_s = arrow_s = float("inf")
    for k in range(3):
        t = time.perf_counter()
        insert_block(client, "readings_no_rollups", block, f"bench-arrow-raw-only-{k}")
        raw_only_s = min(raw_only_s, time.perf_counter() - t)
        t = time.perf_counter()
        insert_block(client, "readings", block, f"bench-arrow-{k}")
        arrow_s = min(arrow_s, time.perf_counter() - t)
    client.command("DROP TABLE readings_no_rollups")
    names = block.column_names
    row_list = [list(r.values()) for r in block.to_pylist()]
    t = time.perf_counter()
    client.insert("readings", row_list, column_names=names, settings={"insert_deduplicate": 0})
    rows_s = time.perf_counter() - t
    client.command("TRUNCATE TABLE readings")
    for t_name in ("readings_1m", "readings_1h"):
        client.command(f"TRUNCATE TABLE {t_name}")
    return {
        "rows": rows,
        "arrow_rows_per_s": round(rows / arrow_s),
        "row_list_rows_per_s": round(rows / rows_s),
        "arrow_vs_row_list": round(rows_s / arrow_s, 2),
        "arrow_rows_per_s_without_rollup_views": round(rows / raw_only_s),
    }


def bench_sink_path(client, batches: int = 2000, per_batch: int = 100) -> dict:
    codec = AvroCodec()
    srcs = []
    for i in range(batches):
        rec = {
            "batch_id": f"b{i}",
            "tenant": "tenant0",
            "site": "site1",
            "machine": f"m{i % MACHINES:03d}",
            "gateway": "gw1",
            "ingest_time": NOW_US,
            "readings": [
                {
                    "reading_id": f"b{i}:{k}",
                    "sensor": f"s{k % SENSORS}",
                    "ts": NOW_US - 10**9 + i * 1000 + k,
                    "value": float(k),
                    "unit": "degC",
                    "quality": 192,
                }
                for k in range(per_batch)
            ],
        }
        srcs.append(Source("readings.valid", i % 4, i // 4, b"k", codec.encode("reading_batch", rec)))
    t = time.perf_counter()
    runs = plan_runs(srcs, ROUTE_BY_TOPIC, codec)
    plan_s = time.perf_counter() - t
    t = time.perf_counter()
    for run in runs:
        insert_block(client, run.table, run.columns.to_arrow(), run.token)
    insert_s = time.perf_counter() - t
    n = batches * per_batch
    client.command("TRUNCATE TABLE readings")
    return {
        "readings": n,
        "messages": batches,
        "decode_and_columns_s": round(plan_s, 3),
        "arrow_and_insert_s": round(insert_s, 3),
        "end_to_end_readings_per_s": round(n / (plan_s + insert_s)),
    }


def bench_concurrent(client, url: str, seconds: float = 4.0) -> dict:
    block = synthetic_block(0, 200_000, SAMPLE_US, 200_000)

    def ingest(stop_at: float) -> int:
        k = 0
        while time.monotonic() < stop_at:
            insert_block(client, "readings", block, f"conc-{time.monotonic_ns()}")
            k += block.num_rows
        return k

    alone = ingest(time.monotonic() + seconds) / seconds
    reader = connect(url)
    reader.command("SET readonly = 2")
    stop = threading.Event()
    latencies: list[float] = []

    def query_loop() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            reader.query_arrow(reports.health(hours=24), use_strings=True)
            latencies.append(time.perf_counter() - t)

    th = threading.Thread(target=query_loop)
    th.start()
    shared = ingest(time.monotonic() + seconds) / seconds
    stop.set()
    th.join()
    reader.close()
    for t_name in ("readings", "readings_1m", "readings_1h"):
        client.command(f"TRUNCATE TABLE {t_name}")
    return {
        "ingest_rows_per_s_alone": round(alone),
        "ingest_rows_per_s_with_reports_running": round(shared),
        "reports_run_meanwhile": len(latencies),
        "report_latency_s_meanwhile_median": round(statistics.median(latencies), 3) if latencies else None,
    }


def load_events(client) -> dict:
    codec = AvroCodec()
    srcs = []
    for i in range(10_000):
        m = f"m{i % MACHINES:03d}"
        srcs.append(
            Source(
                "anomalies",
                i % 4,
                i,
                b"k",
                codec.encode(
                    "anomaly_event",
                    {
                        "event_id": f"e{i}",
                        "tenant": f"tenant{i % TENANTS}",
                        "site": "site1",
                        "machine": m,
                        "ts": NOW_US - i * 10**7,
                        "window_start": NOW_US - i * 10**7,
                        "window_end": NOW_US - i * 10**7,
                        "score": 1 + (i % 13) / 3,
                        "threshold": 1.0,
                        "kind": "multivariate",
                        "model": "hst",
                        "model_version": "1",
                        "contributions": [
                            {"sensor": f"s{i % SENSORS}", "share": 0.6, "value": 1.0},
                            {"sensor": f"s{(i + 3) % SENSORS}", "share": 0.4, "value": None},
                        ],
                    },
                ),
            )
        )
    for i in range(2000):
        for rev, state in enumerate(("open", "acknowledged", "resolved")[: 1 + i % 3], start=1):
            srcs.append(
                Source(
                    "alerts",
                    i % 4,
                    3 * i + rev,
                    b"k",
                    codec.encode(
                        "alert_event",
                        {
                            "alert_id": f"a{i}",
                            "revision": rev,
                            "tenant": f"tenant{i % TENANTS}",
                            "site": "site1",
                            "machine": f"m{i % MACHINES:03d}",
                            "sensors": ["s1"],
                            "rule": "limit",
                            "severity": ("info", "warning", "critical")[i % 3],
                            "state": state,
                            "title": "t",
                            "first_seen": NOW_US,
                            "last_seen": NOW_US,
                            "occurrences": 1,
                            "escalation_level": 0,
                            "evidence": {"value": 1.0},
                            "recommended_action": None,
                            "actor": None,
                            "note": None,
                            "silenced_until": None,
                            "updated_at": NOW_US - 10**10 + rev * 6 * 10**8 + i,
                        },
                    ),
                )
            )
    for i in range(20_000):
        srcs.append(
            Source(
                "readings.rejected",
                i % 4,
                i,
                b"k",
                codec.encode(
                    "dead_letter",
                    {
                        "id": f"d{i}",
                        "tenant": f"tenant{i % TENANTS}",
                        "site": "site1",
                        "machine": f"m{i % MACHINES:03d}",
                        "stage": ("ingest", "validation")[i % 2],
                        "reason": ("value_out_of_range", "unknown_sensor", "malformed_json")[i % 3],
                        "detail": "bench",
                        "sensor": None,
                        "ts": None,
                        "value": None,
                        "source_topic": "gateway.readings",
                        "source_partition": i % 4,
                        "source_offset": i,
                        "original": b"{}",
                        "truncated": False,
                        "content_type": None,
                        "rejected_at": NOW_US - i * 10**6,
                    },
                ),
            )
        )
    for run in plan_runs(srcs, ROUTE_BY_TOPIC, codec):
        insert_block(client, run.table, run.columns.to_arrow(), run.token)
    return {
        "anomalies": 10_000,
        "alert_revisions": sum(1 + i % 3 for i in range(2000)),
        "dead_letters": 20_000,
    }


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=10_000_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "archival.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-archival-") as tmp:
        url = f"chdb://{tmp}/ch"
        client = connect(url)
        migrate(client, ttl_days=3650)
        result: dict = {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "clickhouse": client.server_version,
        }
        result["insert"] = bench_insert(client, 500_000)
        ins = result["insert"]
        print(
            f"insert 500k readings (rollup views attached): Arrow {ins['arrow_rows_per_s']:,} rows/s, "
            f"row lists {ins['row_list_rows_per_s']:,} rows/s (x{ins['arrow_vs_row_list']}); "
            f"Arrow into the raw table alone {ins['arrow_rows_per_s_without_rollup_views']:,} rows/s",
            flush=True,
        )
        result["sink_path"] = bench_sink_path(client)
        print(
            f"sink path (Avro decode + columns + Arrow insert): "
            f"{result['sink_path']['end_to_end_readings_per_s']:,} readings/s",
            flush=True,
        )
        result["concurrent"] = bench_concurrent(client, url)
        print(
            f"ingest alone {result['concurrent']['ingest_rows_per_s_alone']:,} rows/s, with reports running "
            f"{result['concurrent']['ingest_rows_per_s_with_reports_running']:,} rows/s",
            flush=True,
        )

        n, block_rows = args.readings, 1_000_000
        t = time.perf_counter()
        for start in range(0, n, block_rows):
            insert_block(
                client,
                "readings",
                synthetic_block(start, min(block_rows, n - start), SAMPLE_US, n),
                f"bulk-{start}",
            )
        load_s = time.perf_counter() - t
        result["load"] = {
            "readings": n,
            "seconds": round(load_s, 1),
            "rows_per_s_incl_generation": round(n / load_s),
            **load_events(client),
        }
        print(
            f"loaded {n:,} readings in {load_s:.1f}s ({n / load_s:,.0f} rows/s incl. generating them)",
            flush=True,
        )

        parts = client.query(
            "SELECT sum(bytes_on_disk), sum(rows), count() FROM system.parts "
            "WHERE table = 'readings' AND active"
        ).result_rows[0]
        rollups = client.query(
            "SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active "
            "AND table IN ('readings_1m', 'readings_1h') GROUP BY table"
        ).result_rows
        cols = client.query(
            "SELECT name, sum(data_compressed_bytes) FROM system.columns WHERE table = 'readings' "
            "GROUP BY name ORDER BY 2 DESC LIMIT 5"
        ).result_rows
        result["disk"] = {
            "readings_bytes": int(parts[0]),
            "readings_rows": int(parts[1]),
            "parts": int(parts[2]),
            "bytes_per_reading": round(parts[0] / parts[1], 2),
            "largest_columns_bytes_per_reading": {c: round(b / parts[1], 2) for c, b in cols},
            "rollups": {t: {"bytes": int(b), "rows": int(r)} for t, b, r in rollups},
        }
        print(
            f"disk: {result['disk']['bytes_per_reading']} bytes/reading over {parts[2]} parts; "
            f"largest columns {result['disk']['largest_columns_bytes_per_reading']}",
            flush=True,
        )

        target = SessionTarget(AnalystSession(client, Scope()), "bench")  # locks client: readonly = 1
        day_ago = reports.parse_time(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW_US / 1e6 - 86_400)))
        now = reports.parse_time(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(NOW_US / 1e6 + 60)))
        canned = {
            "health": reports.health(hours=24),
            "anomalous-sensors": reports.anomalous_sensors(hours=24 * 30),
            "alerts": reports.alerts(hours=24 * 30),
            "data-quality": reports.data_quality(hours=24 * 30),
            "trend 1m (1 day)": reports.trend("m007", "s3", day_ago, now, "1m", tenant="tenant1"),
            "trend raw (1 day)": reports.trend("m007", "s3", day_ago, now, "raw", tenant="tenant1"),
        }
        result["reports_s"] = {}
        for name, sql in canned.items():
            rows = target.arrow(sql).num_rows
            result["reports_s"][name] = timed(lambda sql=sql: target.arrow(sql))
            print(f"report {name:<20} {result['reports_s'][name] * 1000:8.1f} ms  ({rows} rows)", flush=True)
        feeds = {r.topic: r.table for r in ROUTES}
        wanted = [(t, p) for t in feeds for p in range(4)]
        result["resume_positions_s"] = timed(lambda: resume_positions(client, feeds, wanted))
        print(f"resume positions (20 partitions): {result['resume_positions_s'] * 1000:.1f} ms", flush=True)
        client.close()
    result["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_s']} s)")


if __name__ == "__main__":
    main()
