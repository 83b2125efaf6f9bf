"""One Kafka transaction of the processor loop: outputs and input offsets, by librdkafka's rules.

- A retriable error of ``commit_transaction`` is retried as a commit (the transaction may
  already be committing); an error that requires an abort aborts, and the outputs are
  produced again in a new transaction; a fatal error raises :class:`ProducerFailed`: that
  producer is done for, and the loop goes on with a new one, after asking the group whether
  the transaction committed (a fatal error during the commit leaves that open). Seen on the
  3-broker cluster: after the transaction coordinator was SIGKILLed, ending an abortable
  transaction failed with a fatal INVALID_TXN_STATE and validation died; per-process
  transactional ids mean no other producer can be fenced by a new one.
- Outputs the broker or client refuses for what they are (too large, invalid) are reported
  as :attr:`Outcome.REFUSED` at once: retrying cannot help, so the loop dead-letters the input
  that produced them instead of rewinding to it forever (which stalled the partition).
- A transaction that cannot be aborted either (the producer is stuck) raises
  :class:`ProducerFailed` too.
- Transient failures (broker away) are retried a few times, then reported as
  :attr:`Outcome.FAILED`: the loop rolls back and consumes the batch again later.

Offsets committed are the consumer's positions (:func:`commit_positions`): past the
transaction markers that follow the last message, so a caught-up group sits at the log end.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from plantstream import faultpoint
from plantstream.errors import PlantstreamError
from plantstream.kafka import Output, next_offsets
from plantstream.txnguard import send_offsets

log = logging.getLogger(__name__)

ATTEMPTS = 5
# Errors about the records themselves: the same records fail the same way every time.
REFUSED_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                           KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_MSG})


class Outcome(enum.Enum):
    COMMITTED = "committed"
    REFUSED = "refused"  # the outputs themselves were refused: dead-letter the input
    FAILED = "failed"    # transient: roll back, consume again


class TransactionResult:
    def __init__(self, outcome: Outcome, error: str = "") -> None:
        self.outcome, self.error = outcome, error


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


def markers_passed(consumer: Consumer) -> dict[tuple[str, int], int]:
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


def fencing_offsets(consumer: Consumer) -> list[TopicPartition] | None:
    """The group's committed offsets of the partitions this copy owns, for a transaction that
    consumed nothing (a timer's outputs and state changes). Sent with it, they change nothing
    for the group, but they carry the group generation: a zombie whose partitions moved on
    (frozen past its session, not told yet) has its timer transaction refused (KIP-447) like
    any batch, instead of writing alerts and state for partitions another copy now owns.
    None when they cannot be known now: the timer's work waits for its next turn."""
    try:
        owned = consumer.assignment()
        committed = consumer.committed(owned, timeout=5) if owned else []
    except KafkaException as exc:
        log.warning("committed offsets unknown; the timer's transaction waits for its next turn",
                    extra={"error": exc.args[0].str()})
        return None
    return [tp for tp in committed if tp.error is None and tp.offset >= 0]


# A previous owner's open transaction ends within transaction.timeout.ms (10 s) plus the
# broker's abort check interval (10 s).
STABLE_WAIT_S = 30.0


def stable_offsets(consumer: Consumer, parts: Sequence[TopicPartition],
                   timeout: float = STABLE_WAIT_S) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets of ``parts`` once no transaction holds them open.

    A ``read_committed`` consumer asks for *stable* offsets (KIP-447): while a previous owner's
    transaction that already sent offsets for these partitions is still open (a copy frozen
    between ``send_offsets_to_transaction`` and ``commit_transaction``), librdkafka's
    ``committed()`` waits and times out. Once it answers, that transaction has committed or
    aborted, so its changelog records are final too: state must be restored *after* this,
    never before (the frozen-copy fault trial: a new owner that restored first missed the
    zombie's last changelog records, which were still in its client when it froze, then
    resumed from the zombie's committed offsets with the older state).

    None when they are still not known after ``timeout``: seen once right after a broker
    restart (validation's ``committed()`` timed out for 120 s in its assignment callback,
    with no transaction of its group open at the coordinator; not understood yet). The
    caller decides: an assignment goes on without them, as it did before this wait existed,
    since ending the process there stopped the service."""
    if not parts:
        return {}
    query = [TopicPartition(tp.topic, tp.partition) for tp in parts]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(query, timeout=5)}
        except KafkaException as exc:  # _TIMED_OUT while unstable; the coordinator may be moving
            if time.monotonic() > deadline:
                log.error("committed offsets still not stable; going on without waiting for them",
                          extra={"error": exc.args[0].str(), "partitions": len(query), "waited_s": timeout})
                return None
            log.warning("committed offsets not stable yet (a previous owner's transaction is open); waiting",
                        extra={"error": exc.args[0].str(), "partitions": len(query)})
            time.sleep(0.5)


class ProducerFailed(PlantstreamError):
    """The transactional producer hit a fatal error; replace it. Whether the transaction
    committed is for the group's committed offsets to say."""


def run_transaction(producer: Producer, consumer: Consumer, outputs: list[Output],
                    offsets: list[TopicPartition]) -> TransactionResult:
    """Produce ``outputs`` and commit ``offsets`` in one transaction (see the module doc).
    Raises ``ProducerFailed`` on a fatal error and ``ProducerWedged`` when librdkafka hangs."""
    try:
        return _run_transaction(producer, consumer, outputs, offsets)
    except KafkaException as exc:
        if exc.args[0].fatal():
            raise ProducerFailed(exc.args[0].str()) from exc
        raise


def _run_transaction(producer: Producer, consumer: Consumer, outputs: list[Output],
                     offsets: list[TopicPartition]) -> TransactionResult:
    error = ""
    refused: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None and err.code() in REFUSED_CODES:
            refused.append(err)

    for attempt in range(1, ATTEMPTS + 1):
        refused.clear()
        try:
            producer.begin_transaction()
            for out in outputs:
                _produce(producer, out, delivered)
            faultpoint.reached("before_offsets")
            if offsets:
                send_offsets(producer, offsets, consumer.consumer_group_metadata(), 10)
            faultpoint.reached("before_commit")
            _commit_retrying(producer)
            faultpoint.reached("after_commit")
            return TransactionResult(Outcome.COMMITTED)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            producer.poll(0)  # deliver pending reports: a refused record shows here
            error = err.str()
            _abort(producer)
            if refused or err.code() in REFUSED_CODES:
                why = refused[0].str() if refused else error
                log.error("outputs refused by Kafka", extra={"error": why, "records": len(outputs)})
                return TransactionResult(Outcome.REFUSED, why)
            log.warning("transaction failed, retrying", extra={"attempt": attempt, "error": error})
            time.sleep(min(0.2 * 2**attempt, 5))
    return TransactionResult(Outcome.FAILED, error)


def _produce(producer: Producer, out: Output, delivered: object) -> None:
    while True:
        try:
            producer.produce(out.topic, out.value, out.key, headers=out.headers,
                             partition=-1 if out.partition is None else out.partition,
                             on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)


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


ABORT_TRIES = 2


def _abort(producer: Producer) -> None:
    """Abort, asking again once (librdkafka resumes a timed-out abort). A producer that still
    cannot abort is done for: seen after a broker restart, its transaction coordinator
    connection kept one request queued for minutes ("TxnCoordinator: Timed out 0 in-flight,
    0 retry-queued, 1 out-queue") and every later call failed with "Conflicting
    abort_transaction API call is already in progress", so ingest never committed again.
    Whether the transaction committed (a commit that timed out may have) is for the group's
    committed offsets to say, as after a fatal error."""
    for n in range(1, ABORT_TRIES + 1):
        try:
            producer.abort_transaction(20)
            return
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            if n == ABORT_TRIES:
                raise ProducerFailed(f"the transaction cannot be aborted ({err.str()})") from exc
            log.warning("abort failed, asking again", extra={"error": err.str()})
