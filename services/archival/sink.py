"""The archival sink: Kafka batches -> ClickHouse inserts, exactly once.

How a crash can neither lose nor double a row:
- Every row carries the Kafka partition and offset of its message, and on assignment the
  consumer is moved to one past the highest offset ClickHouse holds for that partition
  (:func:`resume_positions`); Kafka's committed offset only matters for an empty archive.
- Messages of one source partition become *runs*, inserted in offset order: consecutive
  messages bound for the same table and table partition (month), as one Arrow block. One
  block into one table partition is one part, which ClickHouse commits all or nothing, so
  what the archive holds is always a prefix of each source partition.
- A run that is retried after an error carries the same ``insert_deduplication_token``
  (table, topic, partition, offset range), so ClickHouse drops the repeat.
- The rollups are written by the same insert, one part per view after the raw part. On
  assignment, rollup rows a crash left out of the last run of each partition are added from
  the raw rows (:mod:`archival.lastrun`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from confluent_kafka import Message, TopicPartition

from archival.lastrun import finish_last_runs
from archival.tables import ROUTES, Columns, Route, Source, Unarchivable, append_row, month_of, poison_row
from plantstream.avro import AvroCodec
from plantstream.errors import DecodeError, PlantstreamError
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.sinkloop import Sink

log = logging.getLogger(__name__)

MAX_BLOCK_ROWS = 500_000
INSERT_ATTEMPTS = 5


class ArchiveWriteError(PlantstreamError):
    """ClickHouse refused a batch repeatedly; the service stops without committing, so the
    batch is read again after a restart."""


@dataclass
class Run:
    """Consecutive messages of one source partition bound for one table and month."""

    topic: str
    partition: int
    table: str
    month: int
    first: int
    last: int
    columns: Columns = field(init=False)

    def __post_init__(self) -> None:
        self.columns = Columns(self.table)

    @property
    def token(self) -> str:
        return f"{self.table}:{self.topic}:{self.partition}:{self.first}-{self.last}"


def source_of(m: Message) -> Source:
    content_type = None
    for name, value in m.headers() or ():
        if name == "content-type" and value is not None:
            content_type = value.decode("utf-8", "replace")
    return Source(m.topic(), m.partition(), m.offset(), m.key(), m.value(), content_type,
                  tuple(m.headers() or ()))


def plan_runs(
    sources: Iterable[Source],
    routes: dict[str, Route],
    codec: AvroCodec,
    *,
    max_rows: int = MAX_BLOCK_ROWS,
    now_us: int | None = None,
    dead_letters: list[tuple[Source, str]] | None = None,
) -> list[Run]:
    """Split ``sources`` into runs (see the module doc). A message that cannot be decoded or
    stored becomes a row of ``rejected`` (stage 'archival') in its place; each such message
    is reported in ``dead_letters`` as (source, reason)."""
    now = now_us if now_us is not None else time.time_ns() // 1000
    by_partition: dict[tuple[str, int], list[Source]] = {}
    for src in sources:
        by_partition.setdefault((src.topic, src.partition), []).append(src)
    runs: list[Run] = []
    for (topic, partition), srcs in by_partition.items():
        route = routes[topic]
        current: Run | None = None
        for src in sorted(srcs, key=lambda s: s.offset):
            table, month, append, record = _classify(src, route, codec, now, dead_letters)
            if (current is None or (current.table, current.month) != (table, month)
                    or current.columns.rows >= max_rows):
                current = Run(topic, partition, table, month, src.offset, src.offset)
                runs.append(current)
            append(current.columns, record, src)
            current.last = src.offset
    return runs


def _classify(src: Source, route: Route, codec: AvroCodec, now_us: int,
              dead_letters: list[tuple[Source, str]] | None) -> tuple[str, int, Any, dict[str, Any]]:
    try:
        if src.value is None:
            raise DecodeError("not_avro", "empty message (null value) on a topic that holds Avro records")
        record = codec.decode(src.value, route.schema)
        return route.table, route.month(record), route.append, record
    except (DecodeError, Unarchivable) as exc:
        if dead_letters is not None:
            dead_letters.append((src, exc.reason))
        row = poison_row(src, exc.reason, exc.detail, now_us)
        return "rejected", month_of(now_us), append_row, row


def insert_run(client: Client, run: Run) -> None:
    """One run, one Arrow block, one part. Readings rows carry the run's first offset, so the
    last run of a partition can be found again after a crash (:mod:`archival.lastrun`)."""
    constants = {"kafka_run_first": run.first} if run.table == "readings" else None
    insert_block(client, run.table, run.columns.to_arrow(constants), run.token)


def insert_block(client: Client, table: str, block: pa.Table, token: str) -> None:
    """Insert one Arrow block as one part; retried with the same deduplication token, which
    the rollups honour too, so a retry never counts twice."""
    settings = {"insert_deduplication_token": token, "insert_deduplicate": 1,
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                "max_insert_block_size": max(1_048_576, block.num_rows + 1)}
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            client.insert_arrow(table, block, settings=settings)
            return
        except Exception as exc:  # clickhouse-connect raises several families; all are retried
            if attempt == INSERT_ATTEMPTS:
                raise ArchiveWriteError(
                    f"ClickHouse refused {token} {attempt} times ({exc}); check the server or the "
                    "disk, then restart archival: nothing was committed, nothing is lost") from exc
            log.warning("insert failed, retrying",
                        extra={"run": token, "attempt": attempt, "error": str(exc)})
            time.sleep(min(0.2 * 2**attempt, 5))


def resume_positions(client: Client, feeds: dict[str, str],
                     partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Next offset to read per (topic, partition): one past the highest offset archived from
    it, in the table the topic feeds or (for records archival dead-lettered) in ``rejected``.
    Partitions with nothing archived are left out (they start at the committed offset)."""
    wanted = set(partitions)
    top: dict[tuple[str, int], int] = {}

    def note(topic: str, rows: Iterable[Sequence[Any]]) -> None:
        for partition, offset in rows:
            key = (topic, int(partition))
            if key in wanted:
                top[key] = max(top.get(key, -1), int(offset))

    for topic in {t for t, _ in wanted}:
        table = feeds[topic]
        where = "WHERE kafka_topic = {topic:String}" if table == "rejected" else ""
        note(topic, client.query(
            f"SELECT kafka_partition, max(kafka_offset) FROM {table} {where} GROUP BY kafka_partition",
            parameters={"topic": topic}).result_rows)
        note(topic, client.query(
            "SELECT kafka_partition, max(kafka_offset) FROM rejected WHERE kafka_topic = {topic:String} "
            "GROUP BY kafka_partition", parameters={"topic": topic}).result_rows)
    return {key: offset + 1 for key, offset in top.items()}


class ArchivalSink(Sink):
    """Writes every batch to ClickHouse before run_sink commits its offsets."""

    name = "archival"

    def __init__(self, client: Client, settings: Settings, metrics: ServiceMetrics | None = None,
                 codec: AvroCodec | None = None) -> None:
        self.client = client
        self.codec = codec or AvroCodec()
        self.metrics = metrics
        self.routes = {settings.topic_prefix + r.topic: r for r in ROUTES}
        self.rows_written = 0

    @property
    def topics(self) -> list[str]:
        return list(self.routes)

    def write(self, messages: Sequence[Message]) -> None:
        dead: list[tuple[Source, str]] = []
        runs = plan_runs((source_of(m) for m in messages), self.routes, self.codec, dead_letters=dead)
        for src, reason in dead:
            log.warning("record archived as a dead letter", extra={
                "topic": src.topic, "partition": src.partition, "offset": src.offset, "reason": reason})
            if self.metrics:
                self.metrics.dead_letter(reason)
        for run in runs:
            insert_run(self.client, run)
            self.rows_written += run.columns.rows

    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """Resume after the highest archived offset, once the last readings run of each
        partition is whole (:mod:`archival.lastrun`)."""
        feeds = {topic: route.table for topic, route in self.routes.items()}
        starts = resume_positions(self.client, feeds, [(p.topic, p.partition) for p in partitions])
        for topic, table in feeds.items():
            if table == "readings":
                finish_last_runs(self.client, topic, {p: o - 1 for (t, p), o in starts.items() if t == topic})
        return starts
