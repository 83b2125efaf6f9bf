"""Schema, insert path and rollups on the real embedded ClickHouse engine (no broker needed)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from archival_records import NOW_US, codec, reading_batch
from clickhouse_connect.driver.client import Client

from archival.sink import insert_run, plan_runs
from archival.tables import ARROW_SCHEMAS, ROUTES, TABLES, Source
from plantstream.db import apply_retention, connect, migrate
from plantstream.topics import CATALOG, consumed_by

ROUTE_BY_TOPIC = {r.topic: r for r in ROUTES}
JAN_2025 = 1_735_689_600_000_000
FEB_2025 = 1_738_368_000_000_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(c, ttl_days=30)
    yield c
    c.close()  # one embedded engine per process: the next test opens its own directory


def sources(batches: list[dict], partition: int = 0, start: int = 0) -> list[Source]:
    return [Source("readings.valid", partition, start + i, b"acme/s1/m", codec.encode("reading_batch", b))
            for i, b in enumerate(batches)]


def test_the_catalog_and_the_table_mapping_agree_on_what_archival_reads() -> None:
    archived = {spec.name for spec in CATALOG if "archival" in spec.consumers}
    assert set(TABLES) == archived, "map a table in archival.tables.TABLES for each topic archival reads"
    assert [r.topic for r in ROUTES] == [spec.name for spec in consumed_by("archival")]
    assert {r.schema for r in ROUTES} <= {spec.schema for spec in CATALOG}
    assert {r.table for r in ROUTES} <= set(ARROW_SCHEMAS)


def test_migrations_apply_once_and_retention_follows_the_setting(client: Client) -> None:
    assert migrate(client, ttl_days=30) == []
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"readings", "readings_1m", "readings_1h", "rejected", "anomalies", "alerts",
            "notifications"} <= tables
    assert apply_retention(client, 30) == []
    assert "readings" in apply_retention(client, 90)
    assert apply_retention(client, 90) == []
    engine = client.query("SELECT engine_full FROM system.tables WHERE name = 'readings'").result_rows[0][0]
    assert "toIntervalDay(90)" in engine


def test_rollups_match_raw_aggregates(client: Client) -> None:
    rng = random.Random(7)
    batches = []
    for i in range(300):
        b = reading_batch(f"m{i % 6}", i, n=40)
        for r in b["readings"]:
            r["ts"] = NOW_US - rng.randrange(0, 5 * 3600) * 1_000_000
            r["value"] = rng.gauss(50, 10)
        batches.append(b)
    for run in plan_runs(sources(batches), ROUTE_BY_TOPIC, codec):
        insert_run(client, run)
    for col, table, fn in (("minute", "readings_1m", "toStartOfMinute"),
                           ("hour", "readings_1h", "toStartOfHour")):
        raw = client.query(f"""
            SELECT machine, sensor, {fn}(ts) AS t, count(), min(value), max(value), round(avg(value), 9)
            FROM readings GROUP BY machine, sensor, t ORDER BY machine, sensor, t""").result_rows
        rolled = client.query(f"""
            SELECT machine, sensor, {col} AS t, sum(readings), min(value_min), max(value_max),
                   round(sum(value_sum) / sum(readings), 9)
            FROM {table} GROUP BY machine, sensor, t ORDER BY machine, sensor, t""").result_rows
        assert len(raw) > 100
        assert [r[:2] + (r[2].replace(tzinfo=None),) + r[3:] for r in rolled] == \
            [r[:2] + (r[2].replace(tzinfo=None),) + r[3:] for r in raw]


def test_a_repeated_run_adds_nothing_to_raw_rows_or_rollups(client: Client) -> None:
    runs = plan_runs(sources([reading_batch("m1", i) for i in range(50)]), ROUTE_BY_TOPIC, codec)
    for _ in range(2):
        for run in runs:
            insert_run(client, run)
    assert client.query("SELECT count(), uniqExact(reading_id) FROM readings").result_rows == [(1000, 1000)]
    assert client.query("SELECT sum(readings) FROM readings_1m").result_rows == [(1000,)]
    assert client.query("SELECT sum(readings) FROM readings_1h").result_rows == [(1000,)]


def test_runs_follow_offsets_and_split_where_table_or_month_changes(client: Client) -> None:
    batches = [reading_batch("m1", 0, ingest_time=JAN_2025), reading_batch("m1", 1, ingest_time=JAN_2025),
               reading_batch("m1", 2, ingest_time=FEB_2025)]
    srcs = sources(batches)
    srcs.insert(1, Source("readings.valid", 0, 10, b"acme/s1/m1", b"{\"json\": true}"))
    srcs = [s._replace(offset=i) for i, s in enumerate(srcs)]
    dead: list = []
    runs = plan_runs(srcs, ROUTE_BY_TOPIC, codec, dead_letters=dead)
    assert [(r.table, r.first, r.last, r.columns.rows) for r in runs] == [
        ("readings", 0, 0, 20), ("rejected", 1, 1, 1), ("readings", 2, 2, 20), ("readings", 3, 3, 20)]
    assert [reason for _, reason in dead] == ["not_avro"]
    before = client.query("SELECT count() FROM system.parts WHERE table = 'readings' AND active").result_rows
    for run in runs:
        insert_run(client, run)
    parts = client.query("SELECT partition, count() FROM system.parts WHERE table = 'readings' AND active "
                         "GROUP BY partition ORDER BY partition").result_rows
    assert before == [(0,)] and parts == [("202501", 2), ("202502", 1)]  # one part per insert
    dead_rows = client.query("SELECT kafka_topic, kafka_partition, kafka_offset, original FROM rejected")
    assert dead_rows.result_rows == [("readings.valid", 0, 1, '{"json": true}')]


def test_max_rows_splits_a_partition_into_consecutive_runs() -> None:
    runs = plan_runs(sources([reading_batch("m1", i) for i in range(10)]), ROUTE_BY_TOPIC, codec, max_rows=50)
    assert [(r.first, r.last) for r in runs] == [(0, 2), (3, 5), (6, 8), (9, 9)]
    assert all(r.token == f"readings:readings.valid:0:{r.first}-{r.last}" for r in runs)
