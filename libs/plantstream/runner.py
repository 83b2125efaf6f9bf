"""The service loop, written once: consume a batch, let the service's logic turn it into
output records, and commit.

- :class:`Processor` (ingest, validation, anomaly, maintenance): output records, the changes
  of the processor's :class:`~plantstream.store.PartitionStore` s and the input offsets are
  committed in one Kafka transaction, so a crash at any moment neither loses nor duplicates
  output or state. Stores are rebuilt from their changelogs when partitions are assigned.
  ``tick(now_us)`` serves timers (no data, auto-resolve): its outputs and state changes are
  committed in a transaction of their own, between batches.
- :class:`~plantstream.sinkloop.Sink` (archival, in :mod:`plantstream.sinkloop`): ``write(batch)``
  stores the batch elsewhere; offsets are committed only after it returns.

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
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import BrokerUnavailable, PlantstreamError
from plantstream.kafka import Output, consumer_config, next_offsets
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.transaction import (
    Outcome,
    ProducerFailed,
    TransactionResult,
    commit_positions,
    fencing_offsets,
    markers_passed,
    run_transaction,
    stable_offsets,
)
from plantstream.txnguard import ProducerWedged, transactional_producer

log = logging.getLogger(__name__)

CATCH_UP_S = 1.0  # when idle, how often to commit positions that moved past markers only
PATTERN_REFRESH_MS = 5000  # how soon a pattern subscription sees a new topic (a new tenant)

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


def check_messages(msgs: list[Message], at_end: set[tuple[str, int]] | None = None) -> list[Message]:
    """The data messages of a poll; fatal consumer errors raise. ``at_end`` (with
    ``enable.partition.eof``) keeps the partitions last seen at their log end."""
    good = []
    for m in msgs:
        err = m.error()
        if err is None:
            good.append(m)
            if at_end is not None:
                at_end.discard((m.topic(), m.partition()))
        elif err.code() == KafkaError._PARTITION_EOF:
            if at_end is not None:
                at_end.add((m.topic(), m.partition()))
        elif err.fatal() or err.code() == KafkaError._FATAL:
            # a fatal consumer error arrives as a _FATAL event whose own fatal() is False; the
            # consumer reads nothing more after it, so the process ends (for a restart)
            raise KafkaException(err)
        else:
            log.warning("consumer error", extra={"error": err.str()})
    return good


class Carry:
    """The input of a batch whose transaction did not commit (broker away, producer wedged):
    processed again, in order, before any later input of its partitions.

    The batch stays in memory instead of being re-read: a seek back to it is asynchronous in
    librdkafka and was measured to lose it (the broker-restart fault test: a validation batch
    whose producer wedged was never re-read, and a later commit moved the group past it). While
    a batch is carried the assigned partitions are paused, so it cannot grow without bound;
    anything consumed meanwhile is appended. A partition that moves to another copy drops its
    carried messages: the new owner reads them again from the committed offset.

    Every partition paused is resumed by name, when the carry is taken or when the partition
    is revoked, never as "the current assignment": librdkafka keeps a partition's pause across
    its revoke and a later re-assignment, so a partition paused, revoked and assigned back
    stayed paused for good (the broker-restart fault run: ingest and validation read nothing
    for 150 s after a rebalance, with nothing in their logs)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.paused: set[tuple[str, int]] = set()

    def hold(self, consumer: Consumer, msgs: list[Message]) -> None:
        self.messages = list(msgs)
        if msgs:
            log.warning("batch not committed; it is processed again", extra={"messages": len(msgs)})
            self.paused |= _pause(consumer, {(tp.topic, tp.partition) for tp in consumer.assignment()}, True)

    def take(self, consumer: Consumer, gathered: list[Message]) -> list[Message]:
        """The carried messages followed by ``gathered``; the carry is emptied and its paused
        partitions resumed (also when a rebalance dropped every carried message)."""
        if self.paused:
            self.paused -= _pause(consumer, self.paused, False)
        if not self.messages:
            return gathered
        msgs, self.messages = self.messages + gathered, []
        return msgs

    def drop(self, parts: list[TopicPartition], consumer: Consumer | None = None) -> None:
        """A rebalance takes ``parts``: their carried messages go (the next owner re-reads
        them) and, with ``consumer``, their pause too, while they are still assigned."""
        self.messages = without(self.messages, parts)
        leaving = {(p.topic, p.partition) for p in parts} & self.paused
        if consumer is not None and leaving:
            self.paused -= _pause(consumer, leaving, False)


def without(msgs: list[Message], parts: list[TopicPartition]) -> list[Message]:
    """``msgs`` less those of ``parts``: partitions that left this copy, whose messages the
    next owner reads again from the committed offset."""
    gone = {(p.topic, p.partition) for p in parts}
    return [m for m in msgs if (m.topic(), m.partition()) not in gone]


def _pause(consumer: Consumer, parts: set[tuple[str, int]], paused: bool) -> set[tuple[str, int]]:
    """Pause (or resume) ``parts``; those it was done for."""
    if not parts:
        return set()
    try:
        (consumer.pause if paused else consumer.resume)([TopicPartition(t, p) for t, p in sorted(parts)])
        return set(parts)
    except KafkaException as exc:  # pausing only bounds memory; correctness does not need it
        log.info("pause/resume skipped", extra={"error": str(exc)})
        return set()


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
    until_read_to_end: bool = False,
) -> None:
    """Consume ``topics`` in consumer group ``group`` and run ``processor`` exactly once per
    message. A batch is up to ``batch_size`` messages, gathered for up to ``max_wait``
    seconds after its first one (state-heavy processors trade a little latency for fewer,
    larger transactions). ``idle_exit_after`` (seconds without input) is for tests and batch
    jobs; with ``until_read_to_end`` they also leave as soon as every assigned partition is
    read to its log end and committed there (input that was written before the run)."""
    stop = stop or StopFlag().install()
    metrics = metrics or ServiceMetrics(processor.name)
    # Several input topics share per-partition state (maintenance: readings, anomalies and
    # commands of one machine): the range assignor gives partition p of every topic to the
    # same copy; cooperative-sticky would not.
    overrides: dict[str, Any] = {"partition.assignment.strategy": "range"} if len(topics) > 1 else {}
    if any(t.startswith("^") for t in topics):
        # A per-tenant topic made while the service runs (a new tenant) is found by pattern
        # within this time, not librdkafka's default 5 minutes.
        overrides["topic.metadata.refresh.interval.ms"] = PATTERN_REFRESH_MS
    at_end: set[tuple[str, int]] | None = None
    if until_read_to_end:
        overrides["enable.partition.eof"], at_end = True, set()
    consumer = Consumer(consumer_config(settings, group, **overrides))
    producer = transactional_producer(settings, processor.name)
    assigned_at: list[float] = []  # idle time counts from the first assignment, not the join
    carry = Carry()
    # The batch being gathered, over several polls. A rebalance runs inside a poll: the
    # messages of partitions that leave are dropped from it then, or the batch would write
    # them, their state (fresh, as the store no longer holds it) and their offsets into Kafka
    # after the partition moved on (the frozen-copy fault test: the next owner restored a
    # model 28 rows old, and anomaly events went missing). librdkafka itself cleans the poll
    # that serves the rebalance (librdkafka#3269).
    gathering: list[Message] = []

    def leave(parts: list[TopicPartition]) -> None:
        carry.drop(parts, consumer)
        gathering[:] = without(gathering, parts)
        _on_revoke(processor, parts)

    def arrive(parts: list[TopicPartition]) -> None:
        _on_assign(processor, consumer, parts)
        assigned_at.append(time.monotonic())

    consumer.subscribe(
        topics,
        on_assign=lambda _c, parts: arrive(parts),
        on_revoke=lambda _c, parts: leave(parts),
        on_lost=lambda _c, parts: leave(parts),
    )
    last_input = last_tick = last_catch_up = time.monotonic()
    lag = ConsumerLagMeter(metrics)
    try:
        while not stop.stopping:
            msgs = carry.take(consumer, _gather(consumer, gathering, batch_size, max_wait, poll_timeout, stop,
                                                at_end))
            lag.maybe_update(consumer)
            now = time.monotonic()
            if processor.tick_seconds is not None and now - last_tick >= processor.tick_seconds:
                last_tick = now
                if processor.stores and not any(st.partitions() for st in processor.stores):
                    pass  # nothing owned yet: no timers to serve
                else:
                    producer, _ = _run_step(producer, consumer, processor, settings, [],
                                            lambda _msgs: processor.tick(time.time_ns() // 1000), metrics)
            if not msgs:
                if now - last_catch_up >= CATCH_UP_S:
                    last_catch_up = now
                    producer = _commit_markers(producer, consumer, processor, settings)
                if idle_exit_after is not None and assigned_at:
                    if now - max(last_input, assigned_at[0]) > idle_exit_after:
                        break
                    if at_end is not None and read_to_end(consumer, at_end):
                        producer = _commit_markers(producer, consumer, processor, settings)
                        break
                continue
            last_input = now
            producer, failed = _run_step(producer, consumer, processor, settings, msgs, processor.process,
                                         metrics)
            carry.hold(consumer, failed)
    finally:
        consumer.close()
        producer.flush(5)
        log.info("stopped", extra={"service": processor.name})


def read_to_end(consumer: Consumer, at_end: set[tuple[str, int]]) -> bool:
    """Whether every assigned partition was read to its log end: its last event an EOF, and
    its position not moved back below the end since (a rewind after a failed transaction).
    Local state only: no broker round trip."""
    owned = consumer.assignment()
    if not owned or not {(tp.topic, tp.partition) for tp in owned} <= at_end:
        return False
    for pos in consumer.position(owned):
        if pos.offset >= 0 and pos.offset < consumer.get_watermark_offsets(pos, cached=True)[1]:
            return False
    return True


def _gather(consumer: Consumer, into: list[Message], batch_size: int, max_wait: float, poll_timeout: float,
            stop: StopFlag, at_end: set[tuple[str, int]] | None) -> list[Message]:
    """One batch, gathered in ``into`` (where a rebalance drops the messages of partitions
    that leave), then handed over: what has arrived (or, when nothing has, the first message
    within ``poll_timeout``), then more for up to ``max_wait`` or until ``batch_size``.

    librdkafka's ``consume(n, timeout)`` returns only at ``n`` messages or at the timeout, so
    asking for a whole batch with the poll timeout made every batch of a stream below
    ``batch_size`` messages per poll timeout wait the full timeout: ingest and validation
    added up to 0.5 s each on a reading's way to readings.valid."""
    into[:] = check_messages(consumer.consume(batch_size, 0), at_end)
    if not into:
        into[:] = check_messages(consumer.consume(1, poll_timeout), at_end)
        if into and batch_size > 1:
            into.extend(check_messages(consumer.consume(batch_size - 1, 0), at_end))
    if into and max_wait > 0:
        deadline = time.monotonic() + max_wait
        while len(into) < batch_size and not stop.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = check_messages(consumer.consume(batch_size - len(into), min(left, poll_timeout)), at_end)
            into.extend(got)
    msgs = list(into)
    into.clear()
    return msgs


def _commit_markers(producer: Producer, consumer: Consumer, processor: Processor,
                    settings: Settings) -> Producer:
    """When idle: commit positions that moved past transaction markers only (no data), so
    the group's committed offsets reach the log end."""
    ahead = [TopicPartition(t, p, o) for (t, p), o in markers_passed(consumer).items()]
    if not ahead:
        return producer
    try:
        run_transaction(producer, consumer, [], ahead)  # FAILED: tried again when next idle
    except ProducerWedged as exc:
        log.error("transactional producer wedged; replacing it", extra={"error": str(exc)})
        return transactional_producer(settings, processor.name)
    except ProducerFailed as exc:  # offsets only: nothing to carry or reload
        log.error("transactional producer failed; replacing it", extra={"error": str(exc)})
        return transactional_producer(settings, processor.name)
    return producer


def _after_fatal(exc: ProducerFailed, consumer: Consumer, processor: Processor, settings: Settings,
                 msgs: list[Message]) -> tuple[Producer, list[Message]]:
    """A new producer after a fatal error, the stores reloaded from their changelogs (the
    truth, whether the transaction committed or not) and, of ``msgs``, those the group's
    committed offsets (read_committed: stable) show were not committed: to be carried."""
    log.error("transactional producer failed; replacing it and reloading state from the changelogs",
              extra={"error": str(exc), "messages": len(msgs)})
    producer = transactional_producer(settings, processor.name)
    owned = consumer.assignment()
    if processor.stores and owned:
        _on_revoke(processor, owned)
        _on_assign(processor, consumer, owned)
    if not msgs:
        return producer, []
    committed = stable_offsets(
        consumer, [TopicPartition(t, p) for t, p in sorted({(m.topic(), m.partition()) for m in msgs})])
    if committed is None:  # whether the batch committed cannot be told: a restart re-reads it safely
        raise BrokerUnavailable("after a failed producer the group's committed offsets stayed unknown; "
                                "the service stops so that a restart resumes from them")
    left = [m for m in msgs if m.offset() >= committed.get((m.topic(), m.partition()), -1)]
    log.info("after the failed producer", extra={"committed": len(msgs) - len(left), "carried": len(left)})
    return producer, left


def _run_step(producer: Producer, consumer: Consumer, processor: Processor, settings: Settings,
              msgs: list[Message], step: Step, metrics: ServiceMetrics) -> tuple[Producer, list[Message]]:
    """One transaction: the step's outputs, the stores' changes and ``msgs``' offsets. Returns
    the producer to go on with and the messages whose transaction did not commit (the loop
    carries them into the next batch: see :class:`Carry`).

    Poison pills: when the step raises, or Kafka refuses its outputs, the batch is rolled back
    and its messages are processed one at a time, each in its own transaction; a message that
    still fails is dead-lettered (reason ``processing_error`` / ``output_refused``, with the
    exception) and the loop goes on. A failing ``tick`` (no message to blame) stops the process."""
    started = time.perf_counter()
    try:
        outputs = step(msgs)
    except Exception:
        if not msgs:
            raise
        log.exception("batch failed; processing its messages one at a time", extra={"messages": len(msgs)})
        _aborted(processor)
        return _one_at_a_time(producer, consumer, processor, settings, msgs, metrics)
    try:
        result = _transaction(producer, consumer, processor, msgs, outputs)
    except ProducerWedged as exc:
        log.error("transactional producer wedged; replacing it", extra={"error": str(exc)})
        return transactional_producer(settings, processor.name), msgs
    except ProducerFailed as exc:
        return _after_fatal(exc, consumer, processor, settings, msgs)
    if result.outcome is Outcome.REFUSED and msgs:
        return _one_at_a_time(producer, consumer, processor, settings, msgs, metrics)
    if result.outcome is Outcome.FAILED:
        return producer, msgs
    if msgs:
        metrics.batch(len(msgs), outputs, time.perf_counter() - started)
    return producer, []


def _transaction(producer: Producer, consumer: Consumer, processor: Processor, msgs: list[Message],
                 outputs: list[Output], *, to_position: bool = True) -> TransactionResult:
    """Commit ``outputs``, the stores' changes and ``msgs``' offsets; roll the stores back
    unless committed. ``to_position=False`` commits exactly past ``msgs`` (one message of a
    larger consumed batch), not the consumer's position past the rest of it."""
    outputs = outputs + [out for st in processor.stores for out in st.changelog()]
    if not msgs and not outputs:
        return TransactionResult(Outcome.COMMITTED)
    if not msgs:  # a tick
        fencing = fencing_offsets(consumer)
        if fencing is None:
            _aborted(processor)
            return TransactionResult(Outcome.FAILED, "committed offsets unknown")
        offsets = fencing
    else:
        offsets = commit_positions(consumer, msgs) if to_position else next_offsets(msgs)
    try:
        result = run_transaction(producer, consumer, outputs, offsets)
    except BaseException:
        _aborted(processor)
        raise
    if result.outcome is Outcome.COMMITTED:
        _committed(processor)
    else:
        _aborted(processor)
    return result


def _one_at_a_time(producer: Producer, consumer: Consumer, processor: Processor, settings: Settings,
                   msgs: list[Message], metrics: ServiceMetrics) -> tuple[Producer, list[Message]]:
    dead = DeadLetters(settings, processor.name, metrics)
    for i, msg in enumerate(msgs):
        last = i == len(msgs) - 1  # only the batch's last message may commit up to the position
        try:
            outputs = processor.process([msg])
            reason, detail, error = "", "", None
        except Exception as exc:  # the poison pill: only this message is given up
            log.exception("message dead-lettered: processing failed",
                          extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()})
            _aborted(processor)
            outputs, reason, detail, error = [], "processing_error", f"{type(exc).__name__}: {exc}", exc
        try:
            result = None
            if not reason:
                result = _transaction(producer, consumer, processor, [msg], outputs, to_position=last)
            if result is not None and result.outcome is Outcome.REFUSED:
                reason, detail = "output_refused", f"Kafka refused this message's outputs: {result.error}"
            if reason:
                letter = dead.make(Source.of(msg), reason, f"{processor.name} could not process this "
                                   f"message ({detail}); fix the cause, then replay the dead letter",
                                   exception=error)
                result = _transaction(producer, consumer, processor, [msg], [letter], to_position=last)
                if result.outcome is Outcome.REFUSED:
                    raise PlantstreamError(f"Kafka refused even the dead letter of {msg.topic()}"
                                           f"[{msg.partition()}]@{msg.offset()}: {result.error}")
        except ProducerWedged as exc:
            log.error("transactional producer wedged; replacing it", extra={"error": str(exc)})
            return transactional_producer(settings, processor.name), msgs[i:]
        except ProducerFailed as exc:
            return _after_fatal(exc, consumer, processor, settings, msgs[i:])
        if result.outcome is Outcome.FAILED:
            return producer, msgs[i:]
        metrics.batch(1, outputs, 0.0)
    return producer, []


def _committed(processor: Processor) -> None:
    for st in processor.stores:
        st.committed()
    processor.committed()


def _aborted(processor: Processor) -> None:
    for st in processor.stores:
        st.aborted()
    processor.aborted()


def _on_assign(processor: Processor, consumer: Consumer, parts: list[TopicPartition]) -> None:
    """Restore the stores' state of ``parts``, after their committed offsets are stable (see
    :func:`~plantstream.transaction.stable_offsets`: the changelog is final only then)."""
    log.info("partitions assigned", extra={"partitions": [f"{p.topic}[{p.partition}]" for p in parts]})
    if processor.stores and parts:
        stable_offsets(consumer, parts)
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
