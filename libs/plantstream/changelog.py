"""Reading a service's state changelog back when partitions are assigned (invariant 2).

A processor writes its state changes to a changelog topic inside the same Kafka transaction
as its output, pinned to the partition number of the input they belong to. When a partition
is assigned (start-up, restart, rebalance), the state of exactly that partition is rebuilt by
reading the changelog partition with ``read_committed`` up to its end: the state then matches
what Kafka committed, whatever happened to the previous owner.

"Its end" is the log end when the read starts, not the first end-of-partition event: a
``read_committed`` reader stops at the last stable offset, which stays behind an open
transaction of a killed copy (until the broker aborts it, ``transaction.timeout.ms``) while
later transactions of the new owner may already be committed after it. Stopping there would
rebuild a state older than the committed input offsets, so the read waits until its position
passes the log end it saw at the start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from plantstream.errors import BrokerUnavailable
from plantstream.kafka import consumer_config, watermarks
from plantstream.settings import Settings


def read_changelog(settings: Settings, topic: str, partitions: list[int], *, since_ms: int | None = None,
                   timeout: float = 120.0) -> Iterator[Message]:
    """Committed records of ``topic``'s ``partitions`` from ``since_ms`` (record timestamp; None:
    the beginning) up to the current end. Raises BrokerUnavailable after ``timeout`` seconds."""
    if not partitions:
        return
    consumer = Consumer(consumer_config(
        settings, f"changelog-reader-{uuid.uuid4().hex}", **{"enable.partition.eof": True}))
    try:
        parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:
            parts = consumer.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in partitions], timeout=30)
        pending = set()
        ends = _log_ends(settings, topic, [tp.partition for tp in parts])
        for tp in parts:
            low, high = ends[tp.partition]
            if tp.offset < 0 and since_ms is not None:  # no record at or after since_ms
                continue
            if high > max(low, tp.offset if tp.offset >= 0 else low):
                pending.add(tp.partition)
        parts = [tp for tp in parts if tp.partition in pending]
        if not parts:
            return
        consumer.assign(parts)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"changelog {topic} {sorted(pending)} not read to its end in "
                                        f"{timeout:.0f}s; is the broker healthy?")
            for msg in consumer.consume(1000, 0.1):  # returns at 1000 or the timeout: keep it short
                err = msg.error()
                if err is None:
                    yield msg
                elif err.code() == KafkaError._PARTITION_EOF:
                    if _position(consumer, topic, msg.partition()) >= ends[msg.partition()][1]:
                        pending.discard(msg.partition())
                    # else: at the last stable offset, behind an open transaction: wait for it
            for p in [p for p in pending if _position(consumer, topic, p) >= ends[p][1]]:
                pending.discard(p)  # moved past markers or an aborted transaction to the end
    finally:
        consumer.close()


def _log_ends(settings: Settings, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(low, high) watermarks of the log itself (read_uncommitted: the high watermark, not the
    last stable offset)."""
    probe = Consumer(consumer_config(settings, f"changelog-ends-{uuid.uuid4().hex}",
                                     **{"isolation.level": "read_uncommitted"}))
    try:
        return {p: watermarks(probe, TopicPartition(topic, p)) for p in partitions}
    finally:
        probe.close()


def _position(consumer: Consumer, topic: str, partition: int) -> int:
    [tp] = consumer.position([TopicPartition(topic, partition)])
    return tp.offset
