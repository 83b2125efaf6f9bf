"""The sink loop: consume batches, hand them to ``sink.write``, commit offsets only after it
returns (the Quix Streams contract), so a crash re-delivers and the sink must be idempotent.
Archival runs on it; stops cleanly on SIGTERM/SIGINT (the current batch is written first)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from plantstream.consumerlag import ConsumerLagMeter
from plantstream.kafka import consumer_config
from plantstream.metrics import ServiceMetrics
from plantstream.runner import StopFlag, check_messages, read_to_end, without
from plantstream.settings import Settings
from plantstream.telemetry import trace_written
from plantstream.transaction import commit_positions, markers_passed

log = logging.getLogger(__name__)


class Sink:
    """Stores a batch outside Kafka. ``write`` must be idempotent under redelivery."""

    name = "sink"

    def write(self, messages: Sequence[Message]) -> None:
        raise NotImplementedError

    def assigned(self, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """Partitions were added to this copy. Return ``{(topic, partition): offset}`` to start
        there instead of the committed offset (a sink that stores offsets with its data
        resumes from its own record); partitions left out start at the committed offset."""
        return {}



def run_sink(
    sink: Sink,
    settings: Settings,
    topics: list[str],
    group: str,
    *,
    batch_size: int = 5000,
    max_wait: float = 1.0,
    poll_timeout: float = 0.2,
    stop: StopFlag | None = None,
    metrics: ServiceMetrics | None = None,
    idle_exit_after: float | None = None,
    until_read_to_end: bool = False,
) -> None:
    """Consume ``topics`` and hand batches to ``sink.write``; commit only after it returns.

    A batch is written when it holds ``batch_size`` messages or its oldest message has
    waited ``max_wait`` seconds, whichever comes first (size and time thresholds).
    ``idle_exit_after`` and ``until_read_to_end``: as for :func:`plantstream.runner.run_processor`.
    """
    stop = stop or StopFlag().install()
    metrics = metrics or ServiceMetrics(sink.name)
    at_end: set[tuple[str, int]] | None = set() if until_read_to_end else None
    eof = {"enable.partition.eof": True} if until_read_to_end else {}
    consumer = Consumer(consumer_config(settings, group, **eof))
    pending: list[Message] = []
    first_at = last_input = last_commit_try = time.monotonic()
    assigned_at: list[float] = []  # idle time counts from the first assignment, not the join
    # Offsets of batches the sink holds that Kafka has not taken yet (broker away): a failed
    # commit is retried, not fatal; the sink is idempotent, so at worst data is re-delivered.
    uncommitted: dict[tuple[str, int], int] = {}

    def commit() -> None:
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in uncommitted.items()],
                            asynchronous=False)
            uncommitted.clear()
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            log.warning("offset commit failed; retrying (the sink has the data)",
                        extra={"error": exc.args[0].str(), "partitions": len(uncommitted)})

    def flush() -> None:
        started = time.perf_counter()
        started_ns = time.time_ns()
        sink.write(pending)
        done = commit_positions(consumer, pending)
        uncommitted.update({(tp.topic, tp.partition): tp.offset for tp in done})
        commit()
        metrics.batch(len(pending), [], time.perf_counter() - started)
        trace_written(f"{sink.name}.write", pending, started_ns)
        pending.clear()

    def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
        assigned_at.append(time.monotonic())
        starts = sink.assigned(parts)
        for p in parts:
            if (p.topic, p.partition) in starts:
                p.offset = starts[(p.topic, p.partition)]
        log.info("partitions assigned",
                 extra={"partitions": [f"{p.topic}[{p.partition}]@{p.offset}" for p in parts]})
        c.incremental_assign(parts)

    def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
        # Write what was read from the leaving partitions while they are still ours.
        if pending:
            flush()
        for p in parts:
            uncommitted.pop((p.topic, p.partition), None)  # the next owner resumes from the sink
        log.info("partitions revoked", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})

    def on_lost(c: Consumer, parts: list[TopicPartition]) -> None:
        # The session expired (a frozen copy): the partitions may have a new owner already,
        # resuming from what the sink holds, so what was read from them is not written.
        pending[:] = without(pending, parts)
        for p in parts:
            uncommitted.pop((p.topic, p.partition), None)
        log.warning("partitions lost; their unwritten messages are left to the next owner",
                    extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})

    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)

    lag = ConsumerLagMeter(metrics)
    try:
        while not stop.stopping:
            msgs = check_messages(consumer.consume(batch_size - len(pending), poll_timeout), at_end)
            lag.maybe_update(consumer)
            now = time.monotonic()
            if msgs:
                if not pending:
                    first_at = now
                pending.extend(msgs)
                last_input = now
            if pending and (len(pending) >= batch_size or now - first_at >= max_wait):
                flush()
            elif not pending and now - last_commit_try >= 2.0:
                last_commit_try = now
                uncommitted.update(markers_passed(consumer))
                if uncommitted:
                    commit()
            elif not msgs and idle_exit_after is not None and assigned_at:
                if now - max(last_input, assigned_at[0]) > idle_exit_after:
                    break
                if at_end is not None and not pending and read_to_end(consumer, at_end):
                    uncommitted.update(markers_passed(consumer))
                    if uncommitted:
                        commit()
                    break
        if pending:
            flush()
    finally:
        pending.clear()  # after a failed write: never write again from the revoke in close()
        consumer.close()
