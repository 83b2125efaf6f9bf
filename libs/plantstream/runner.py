"""The service loop, written once: consume a batch, let the service's logic turn it into
output records, and commit.

- :class:`Processor` (ingest, validation, anomaly, maintenance): output records, the changes
  of the processor's :class:`~plantstream.store.PartitionStore` s and the input offsets are
  committed in one Kafka transaction, so a crash at any moment neither loses nor duplicates
  output or state. Stores are rebuilt from their changelogs when partitions are assigned.
  ``tick(now_us)`` serves timers (no data, auto-resolve): its outputs and state changes are
  committed in a transaction of their own, between batches.
- :class:`Sink` (archival): ``write(batch)`` stores the batch elsewhere; offsets are committed
  only after it returns (the Quix Streams contract), so a crash re-delivers and the sink
  must be idempotent.

Both stop cleanly on SIGTERM/SIGINT: the current batch is finished and committed first.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from plantstream.consumerlag import ConsumerLagMeter
from plantstream.kafka import Output, consumer_config, next_offsets
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.telemetry import trace_written
from plantstream.txnguard import ProducerWedged, send_offsets, transactional_producer

log = logging.getLogger(__name__)

CATCH_UP_S = 1.0  # when idle, how often to commit positions that moved past markers only

Step = Callable[[list[Message]], list[Output]]


class Processor:
    """Turns a batch of input messages into output records. Subclasses override
    :meth:`process`, and keep their state in ``stores`` (the loop writes their changelogs,
    commits or rolls them back with the batch, and rebuilds them on assignment)."""

    name = "processor"
    stores: tuple[PartitionStore[Any], ...] = ()
    tick_seconds: float | None = None  # how often the loop calls tick(); None: never

    def process(self, messages: Sequence[Message]) -> list[Output]:
        raise NotImplementedError

    def tick(self, now_us: int) -> list[Output]:
        """Timers: called every ``tick_seconds`` between batches, on the partitions owned."""
        return []

    def committed(self) -> None:
        """The last batch's output and offsets are durable in Kafka."""

    def aborted(self) -> None:
        """The last batch was rolled back; it will be consumed again."""

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions were added to this copy."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions moved away from this copy."""


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


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop finishes its batch, commits and leaves the group."""

    def __init__(self) -> None:
        self.stopping = False

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        log.info("stopping on signal", extra={"signal": signal.Signals(signum).name})
        self.stopping = True


def _check(msgs: list[Message]) -> list[Message]:
    good = []
    for m in msgs:
        err = m.error()
        if err is None:
            good.append(m)
        elif err.code() == KafkaError._PARTITION_EOF:
            continue
        elif err.fatal():
            raise KafkaException(err)
        else:
            log.warning("consumer error", extra={"error": err.str()})
    return good


def _rewind(consumer: Consumer, msgs: Sequence[Message]) -> None:
    first: dict[tuple[str, int], int] = {}
    for m in msgs:
        k = (m.topic(), m.partition())
        first[k] = min(first.get(k, m.offset()), m.offset())
    for (topic, partition), offset in first.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # partition no longer ours: its new owner re-reads it
            log.info("rewind skipped", extra={"topic": topic, "partition": partition, "error": str(exc)})


def run_processor(
    processor: Processor,
    settings: Settings,
    topics: list[str],
    group: str,
    *,
    batch_size: int = 500,
    max_wait: float = 0.0,
    poll_timeout: float = 0.5,
    stop: StopFlag | None = None,
    metrics: ServiceMetrics | None = None,
    idle_exit_after: float | None = None,
) -> None:
    """Consume ``topics`` in consumer group ``group`` and run ``processor`` exactly once per
    message. A batch is up to ``batch_size`` messages, gathered for up to ``max_wait``
    seconds after its first one (state-heavy processors trade a little latency for fewer,
    larger transactions). ``idle_exit_after`` (seconds without input) is for tests and batch
    jobs."""
    stop = stop or StopFlag().install()
    metrics = metrics or ServiceMetrics(processor.name)
    # Several input topics share per-partition state (maintenance: readings, anomalies and
    # commands of one machine): the range assignor gives partition p of every topic to the
    # same copy; cooperative-sticky would not.
    overrides = {"partition.assignment.strategy": "range"} if len(topics) > 1 else {}
    consumer = Consumer(consumer_config(settings, group, **overrides))
    producer = transactional_producer(settings, processor.name)
    consumer.subscribe(
        topics,
        on_assign=lambda _c, parts: _on_assign(processor, parts),
        on_revoke=lambda _c, parts: _on_revoke(processor, parts),
        on_lost=lambda _c, parts: _on_revoke(processor, parts),
    )
    last_input = last_tick = last_catch_up = time.monotonic()
    lag = ConsumerLagMeter(metrics)
    try:
        while not stop.stopping:
            msgs = _gather(consumer, batch_size, max_wait, poll_timeout, stop)
            lag.maybe_update(consumer)
            now = time.monotonic()
            if processor.tick_seconds is not None and now - last_tick >= processor.tick_seconds:
                last_tick = now
                if processor.stores and not any(st.partitions() for st in processor.stores):
                    pass  # nothing owned yet: no timers to serve
                else:
                    producer = _run_step(producer, consumer, processor, settings, [],
                                         lambda _msgs: processor.tick(time.time_ns() // 1000), metrics)
            if not msgs:
                if now - last_catch_up >= CATCH_UP_S:
                    last_catch_up = now
                    producer = _commit_markers(producer, consumer, processor, settings)
                if idle_exit_after is not None and now - last_input > idle_exit_after:
                    break
                continue
            last_input = now
            producer = _run_step(producer, consumer, processor, settings, msgs, processor.process, metrics)
    finally:
        consumer.close()
        producer.flush(5)
        log.info("stopped", extra={"service": processor.name})


def _gather(consumer: Consumer, batch_size: int, max_wait: float, poll_timeout: float,
            stop: StopFlag) -> list[Message]:
    msgs = _check(consumer.consume(batch_size, poll_timeout))
    if not msgs or max_wait <= 0:
        return msgs
    deadline = time.monotonic() + max_wait
    while len(msgs) < batch_size and not stop.stopping:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        msgs.extend(_check(consumer.consume(batch_size - len(msgs), min(left, poll_timeout))))
    return msgs


def commit_positions(consumer: Consumer, msgs: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``msgs``: one past the last message of each partition, or
    the consumer's position when it is further. librdkafka moves the position past the
    transaction markers that follow a message, so a caught-up group's committed offset is
    the log end (not one short of it per upstream transaction)."""
    offsets = next_offsets(msgs)
    try:
        positions = consumer.position([TopicPartition(tp.topic, tp.partition) for tp in offsets])
    except KafkaException:
        return offsets
    for tp, pos in zip(offsets, positions, strict=True):
        if pos.error is None and pos.offset > tp.offset:
            tp.offset = pos.offset
    return offsets


def _commit_markers(producer: Producer, consumer: Consumer, processor: Processor,
                    settings: Settings) -> Producer:
    """When idle: commit positions that moved past transaction markers only (no data), so
    the group's committed offsets reach the log end."""
    ahead = [TopicPartition(t, p, o) for (t, p), o in _markers_passed(consumer).items()]
    if not ahead:
        return producer
    try:
        _commit_transaction(producer, consumer, processor, [], [], ahead)
    except ProducerWedged as exc:
        log.error("transactional producer wedged; replacing it", extra={"error": str(exc)})
        return transactional_producer(settings, processor.name)
    return producer


def _run_step(producer: Producer, consumer: Consumer, processor: Processor, settings: Settings,
              msgs: list[Message], step: Step, metrics: ServiceMetrics) -> Producer:
    """One transaction: the step's outputs, the stores' changes and ``msgs``' offsets."""
    started = time.perf_counter()
    outputs = step(msgs)
    for st in processor.stores:
        outputs.extend(st.changelog())
    if not msgs and not outputs:
        return producer
    try:
        _commit_transaction(producer, consumer, processor, msgs, outputs, commit_positions(consumer, msgs))
    except ProducerWedged as exc:
        log.error("transactional producer wedged; replacing it", extra={"error": str(exc)})
        _aborted(processor)
        _rewind(consumer, msgs)
        return transactional_producer(settings, processor.name)
    if msgs:
        metrics.batch(len(msgs), outputs, time.perf_counter() - started)
    return producer


def _committed(processor: Processor) -> None:
    for st in processor.stores:
        st.committed()
    processor.committed()


def _aborted(processor: Processor) -> None:
    for st in processor.stores:
        st.aborted()
    processor.aborted()


def _commit_transaction(
    producer: Producer,
    consumer: Consumer,
    processor: Processor,
    msgs: list[Message],
    outputs: list[Output],
    offsets: list[TopicPartition],
) -> None:
    """Outputs + offsets in one transaction. librdkafka's rules: a retriable error of
    ``commit_transaction`` is retried as a commit (the transaction may already be committing);
    an error that requires an abort aborts, and the whole batch is produced again in a new
    transaction; a fatal error ends the process. After five failed transactions the batch is
    rolled back and consumed again."""
    for attempt in range(1, 6):
        try:
            producer.begin_transaction()
            for out in outputs:
                while True:
                    try:
                        producer.produce(out.topic, out.value, out.key, headers=out.headers,
                                         partition=-1 if out.partition is None else out.partition)
                        break
                    except BufferError:
                        producer.poll(0.05)
            if offsets:
                send_offsets(producer, offsets, consumer.consumer_group_metadata(), 10)
            _commit_retrying(producer)
            _committed(processor)
            return
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            log.warning("transaction failed, retrying", extra={"attempt": attempt, "error": err.str()})
            try:
                producer.abort_transaction(30)
            except KafkaException as abort_exc:
                if abort_exc.args[0].fatal():
                    raise
            time.sleep(min(0.2 * 2**attempt, 5))
    _aborted(processor)
    _rewind(consumer, msgs)


def _markers_passed(consumer: Consumer) -> dict[tuple[str, int], int]:
    """Positions that moved past transaction markers only, beyond the committed offsets."""
    try:
        owned = consumer.assignment()
        if not owned:
            return {}
        positions = consumer.position(owned)
        committed = consumer.committed(owned, timeout=5)
    except KafkaException:
        return {}
    return {(pos.topic, pos.partition): pos.offset for pos, done in zip(positions, committed, strict=True)
            if pos.error is None and pos.offset >= 0 and pos.offset > max(done.offset, 0)}


def _commit_retrying(producer: Producer, tries: int = 5) -> None:
    for n in range(1, tries + 1):
        try:
            producer.commit_transaction(60)
            return
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or err.txn_requires_abort() or n == tries:
                raise
            log.warning("transaction commit failed, retrying the commit",
                        extra={"attempt": n, "error": err.str()})
            time.sleep(min(0.2 * 2**n, 5))


def _on_assign(processor: Processor, parts: list[TopicPartition]) -> None:
    log.info("partitions assigned", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})
    numbers = sorted({p.partition for p in parts})
    for st in processor.stores:
        st.assign([n for n in numbers if not st.owns(n)])
    processor.assigned(parts)


def _on_revoke(processor: Processor, parts: list[TopicPartition]) -> None:
    log.info("partitions revoked", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})
    numbers = sorted({p.partition for p in parts})
    for st in processor.stores:
        st.revoke(numbers)
    processor.revoked(parts)


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
) -> None:
    """Consume ``topics`` and hand batches to ``sink.write``; commit only after it returns.

    A batch is written when it holds ``batch_size`` messages or its oldest message has
    waited ``max_wait`` seconds, whichever comes first (size and time thresholds).
    """
    stop = stop or StopFlag().install()
    metrics = metrics or ServiceMetrics(sink.name)
    consumer = Consumer(consumer_config(settings, group))
    pending: list[Message] = []
    first_at = last_input = last_commit_try = time.monotonic()
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

    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)

    lag = ConsumerLagMeter(metrics)
    try:
        while not stop.stopping:
            msgs = _check(consumer.consume(batch_size - len(pending), poll_timeout))
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
                uncommitted.update(_markers_passed(consumer))
                if uncommitted:
                    commit()
            elif not msgs and idle_exit_after is not None and now - last_input > idle_exit_after:
                break
        if pending:
            flush()
    finally:
        pending.clear()  # after a failed write: never write again from the revoke in close()
        consumer.close()
