"""Rollups exact after a crash between the raw insert and the rollup inserts, on the real
embedded ClickHouse engine (no broker needed: the resume path is ``ArchivalSink.assigned``).

The crash is reproduced as ClickHouse leaves it: the raw part of a run is written while the
rollup views are away (dropped for the insert, created again as the restarted service has
them), so the rollups miss exactly that run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from archival_records import codec, reading_batch
from clickhouse_connect.driver.client import Client
from confluent_kafka import TopicPartition

from archival.lastrun import finish_last_runs
from archival.sink import ArchivalSink, insert_block, insert_run, plan_runs
from archival.tables import ROUTES, Source
from plantstream.db import connect, migrate
from plantstream.settings import Settings

TOPIC = "readings.valid"
ROUTE_BY_TOPIC = {r.topic: r for r in ROUTES}
VIEWS = ("readings_1m_mv", "readings_1h_mv")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(c, ttl_days=30)
    yield c
    c.close()


def archive(client: Client, partition: int, offsets: range, machine: str = "m1") -> None:
    srcs = [Source(TOPIC, partition, o, b"acme/s1/" + machine.encode(),
                   codec.encode("reading_batch", reading_batch(machine, o))) for o in offsets]
    for run in plan_runs(srcs, ROUTE_BY_TOPIC, codec):
        insert_run(client, run)


def archive_with_rollups_lost(client: Client, partition: int, offsets: range) -> None:
    """The raw part lands, the process dies before the views' parts: what a SIGKILL leaves."""
    ddl = {v: client.query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() "
                           "AND name = {v:String}", parameters={"v": v}).result_rows[0][0] for v in VIEWS}
    for v in VIEWS:
        client.command(f"DROP VIEW {v}")
    archive(client, partition, offsets)
    for v in VIEWS:
        client.command(ddl[v])


def totals(client: Client) -> tuple[int, int, int]:
    return (client.query("SELECT count() FROM readings").result_rows[0][0],
            client.query("SELECT sum(readings) FROM readings_1m").result_rows[0][0],
            client.query("SELECT sum(readings) FROM readings_1h").result_rows[0][0])


def assign(client: Client, *partitions: int) -> dict[tuple[str, int], int]:
    sink = ArchivalSink(client, dataclasses.replace(Settings.from_env(), topic_prefix=""))
    return sink.assigned([TopicPartition(TOPIC, p) for p in partitions])


def test_a_run_whose_rollups_a_crash_lost_gets_them_on_resume_and_nothing_else(client: Client) -> None:
    archive(client, 0, range(0, 30))
    archive(client, 1, range(0, 10))
    archive_with_rollups_lost(client, 0, range(30, 45))  # 15 batches x 20 readings
    assert totals(client) == (1100, 800, 800)

    starts = assign(client, 0, 1)

    assert starts == {(TOPIC, 0): 45, (TOPIC, 1): 10}
    assert totals(client) == (1100, 1100, 1100)
    per_minute = client.query(
        "SELECT machine, sensor, toStartOfMinute(ts) AS t, count() FROM readings GROUP BY machine, sensor, t "
        "ORDER BY machine, sensor, t").result_rows
    rolled = client.query(
        "SELECT machine, sensor, minute, sum(readings) FROM readings_1m GROUP BY machine, sensor, minute "
        "ORDER BY machine, sensor, minute").result_rows
    assert rolled == per_minute
    assert assign(client, 0, 1) == starts and totals(client) == (1100, 1100, 1100)  # a second resume: no-op


def test_a_whole_last_run_is_left_as_it_is(client: Client) -> None:
    archive(client, 2, range(0, 25))
    results = finish_last_runs(client, TOPIC, {2: 24})
    assert [(r.outcome, r.first, r.last, r.added) for r in results] == [("whole", 0, 24, ())]
    assert totals(client) == (500, 500, 500)


def test_a_run_across_two_months_gets_the_one_month_part_it_lacks(client: Client) -> None:
    archive(client, 0, range(0, 10))
    srcs = []
    for o in range(10, 14):  # the last run: two batches stamped this month, two next month
        batch = reading_batch("m1", o)
        if o >= 12:
            for r in batch["readings"]:
                r["ts"] += 40 * 86_400_000_000
        srcs.append(Source(TOPIC, 0, o, b"acme/s1/m1", codec.encode("reading_batch", batch)))
    for run in plan_runs(srcs, ROUTE_BY_TOPIC, codec):
        insert_run(client, run)
    later = client.query("SELECT max(toYYYYMM(ts)) FROM readings").result_rows[0][0]
    client.command(f"ALTER TABLE readings_1m DROP PARTITION {later}")  # that one part never came
    assert totals(client) == (280, 240, 280)

    (result,) = finish_last_runs(client, TOPIC, {0: 13})

    assert (result.outcome, result.first, result.added) == ("completed", 10, (("readings_1m", later, 40),))
    assert totals(client) == (280, 280, 280)
    assert finish_last_runs(client, TOPIC, {0: 13})[0].outcome == "whole"


def test_a_last_record_in_rejected_means_the_readings_run_before_it_is_whole(client: Client) -> None:
    archive(client, 0, range(0, 5))
    srcs = [Source(TOPIC, 0, 5, b"acme/s1/m1", b"not avro")]
    for run in plan_runs(srcs, ROUTE_BY_TOPIC, codec):
        insert_run(client, run)
    assert assign(client, 0) == {(TOPIC, 0): 6}
    assert [r.outcome for r in finish_last_runs(client, TOPIC, {0: 5})] == ["in_rejected"]


def test_rows_archived_before_the_run_first_column_are_not_checked(client: Client) -> None:
    srcs = [Source(TOPIC, 0, o, b"acme/s1/m1", codec.encode("reading_batch", reading_batch("m1", o)))
            for o in range(3)]
    (run,) = plan_runs(srcs, ROUTE_BY_TOPIC, codec)
    legacy = run.columns.to_arrow({"kafka_run_first": 0}).drop_columns(["kafka_run_first"])  # old service
    insert_block(client, "readings", legacy, run.token)
    assert client.query("SELECT DISTINCT kafka_run_first FROM readings").result_rows == [(-1,)]
    assert [r.outcome for r in finish_last_runs(client, TOPIC, {0: 2})] == ["before_run_first"]
    assert totals(client) == (60, 60, 60)
