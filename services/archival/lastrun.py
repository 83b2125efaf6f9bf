"""Finishing a crashed archival's last insert, so the rollups are exact after any crash.

An insert into ``readings`` writes the raw part first, then one part per rollup (the
materialized views into ``readings_1m`` and ``readings_1h``, one part per month of sample
time). A SIGKILL in between leaves raw rows whose rollup rows never came, and resuming
after the highest archived offset would skip past them for good.

So when archival takes a partition (at start-up or after a rebalance) it checks that
partition's last run against each rollup: every readings row keeps its run's first offset
(``kafka_run_first``) and every rollup row the source partition and the highest offset it
counts (``kafka_offset_max``). For each month of the run, a rollup that does not reach the
run's highest offset in that month lacks that month's part, and gets it from the raw rows of
the run: one block, so one part, all or nothing; after it the check passes, so a second
resume adds nothing.

Only the last run can be short: the runs of one partition are inserted one after another,
and an insert returns only once its views are written. If the partition's newest archived
record is in ``rejected`` instead, its last readings run was followed by another insert and
is whole. (Repeating the last insert under its deduplication token cannot do this job: the
embedded engine's deduplication log does not keep its newest entries when the process ends,
and in the archival SIGKILL test such a repeat after a restart doubled the raw rows of three
partitions of four.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

#: rollup table -> (its time column, the function that makes it from ``ts``), as in migrations
ROLLUPS = {"readings_1m": ("minute", "toStartOfMinute"), "readings_1h": ("hour", "toStartOfHour")}

Outcome = Literal["whole", "completed", "in_rejected", "before_run_first"]


@dataclass(frozen=True)
class LastRun:
    """What :func:`finish_last_runs` found and did for one partition: ``added`` lists
    (rollup table, month, readings counted) for each part it wrote."""

    partition: int
    last: int
    first: int | None
    outcome: Outcome
    added: tuple[tuple[str, int, int], ...] = ()


def finish_last_runs(client: Client, topic: str, tops: dict[int, int]) -> list[LastRun]:
    """Complete the rollups of the last run of each partition of ``topic`` (readings).

    ``tops``: partition -> its highest offset archived anywhere (readings or rejected)."""
    if not tops:
        return []
    firsts = {int(p): int(first) for p, first in client.query(
        "SELECT kafka_partition, any(kafka_run_first) FROM readings "
        "WHERE (kafka_partition, kafka_offset) IN {keys:Array(Tuple(UInt16, UInt64))} "
        "GROUP BY kafka_partition",
        parameters={"keys": sorted(tops.items())}).result_rows}
    done = []
    for partition, last in sorted(tops.items()):
        first = firsts.get(partition)
        if first is None:
            done.append(LastRun(partition, last, None, "in_rejected"))
        elif first < 0:  # archived before kafka_run_first existed
            done.append(LastRun(partition, last, None, "before_run_first"))
        else:
            added = _complete(client, partition, first, last)
            done.append(LastRun(partition, last, first, "completed" if added else "whole", added))
            if added:
                log.warning("rollups of the last run before a crash completed from the raw rows", extra={
                    "topic": topic, "partition": partition, "first": first, "last": last,
                    "added": [f"{t}/{m}: {n} readings" for t, m, n in added]})
    return done


_RUN = ("kafka_partition = {p:UInt16} AND kafka_offset BETWEEN {first:UInt64} AND {last:UInt64} "
        "AND kafka_run_first = {first:Int64}")


def _complete(client: Client, partition: int, first: int, last: int) -> tuple[tuple[str, int, int], ...]:
    params = {"p": partition, "first": first, "last": last}
    months = client.query(
        f"SELECT toYYYYMM(ts) AS month, max(kafka_offset), min(ts), max(ts) FROM readings WHERE {_RUN} "
        "GROUP BY month ORDER BY month", parameters=params).result_rows
    added = []
    for table, (column, start_of) in ROLLUPS.items():
        for month, top, lo, hi in months:
            reached = client.query(
                f"SELECT max(kafka_offset_max) FROM {table} WHERE kafka_partition = {{p:UInt16}} "
                f"AND {column} BETWEEN {start_of}({{lo:DateTime64(6, 'UTC')}}) "
                "AND {hi:DateTime64(6, 'UTC')}",
                parameters={"p": partition, "lo": lo, "hi": hi}).result_rows[0][0] or 0
            if reached >= top:
                continue
            n = client.query(f"SELECT count() FROM readings WHERE {_RUN} AND toYYYYMM(ts) = {{m:UInt32}}",
                             parameters={**params, "m": month}).result_rows[0][0]
            client.command(
                f"INSERT INTO {table} (tenant, site, machine, sensor, {column}, readings, value_min, "
                "value_max, value_sum, last_ts, kafka_partition, kafka_offset_max) "
                f"SELECT tenant, site, machine, sensor, {start_of}(ts) AS {column}, count(), min(value), "
                f"max(value), sum(value), max(ts), kafka_partition, max(kafka_offset) FROM readings "
                f"WHERE {_RUN} AND toYYYYMM(ts) = {{m:UInt32}} "
                f"GROUP BY tenant, site, machine, sensor, {column}, kafka_partition",
                parameters={**params, "m": month},
                # one block, so one part: all of it or none of it
                settings={"insert_deduplicate": 0, "max_threads": 1, "max_insert_threads": 1,
                          "min_insert_block_size_rows": n + 1, "min_insert_block_size_bytes": 1 << 40,
                          "max_insert_block_size": max(1_048_576, n + 1)})
            added.append((table, int(month), int(n)))
    return tuple(added)
