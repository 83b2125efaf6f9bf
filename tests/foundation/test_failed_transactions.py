"""A transaction that does not commit (broker away, producer wedged) loses nothing: the loop
keeps the batch in memory and processes it again before any later input of its partitions,
with the stores rolled back, so every output appears once and the group reaches the log end.
And when a batch is taken apart message by message (a poison pill in it), each message's
transaction commits exactly past that message, never past the rest of the consumed batch,
which a crash in between would otherwise skip.

The broker is real; only the outcome of chosen transactions is forced (``run_transaction``
is wrapped), because a broker outage at an exact moment cannot be scheduled."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from tx_input import Counting

from plantstream import runner
from plantstream.kafka import Output, consumer_config
from plantstream.runner import StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.topics import ALERT_COMMANDS, GATEWAY_READINGS, VALIDATION_STATE
from plantstream.transaction import Outcome, ProducerFailed, TransactionResult
from plantstream.txnguard import ProducerWedged

from kafka_io import produce_all, read_all

pytestmark = pytest.mark.integration


def committed_and_end(settings: Settings, topic: str, group: str) -> tuple[int, int]:
    consumer = Consumer(consumer_config(settings, group))
    try:
        part = TopicPartition(topic, 0)
        [done] = consumer.committed([part], timeout=10)
        return done.offset, consumer.get_watermark_offsets(part, timeout=10)[1]
    finally:
        consumer.close()


@pytest.mark.parametrize("failure", ["failed", "wedged", "fatal"])
def test_a_batch_whose_transaction_failed_is_processed_again_once(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    src = GATEWAY_READINGS.physical(settings)
    values = [b"m-%d" % i for i in range(40)]
    produce_all(settings, [Output(src, b"k", v, partition=0) for v in values])
    real = runner.run_transaction
    calls: list[int] = []

    def second_fails(producer, consumer, outputs, offsets):  # noqa: ANN001, ANN202
        calls.append(len(outputs))
        if len(calls) == 2 and outputs:  # the second batch with outputs: the broker went away
            if failure == "wedged":
                raise ProducerWedged("forced by the test")
            if failure == "fatal":  # e.g. INVALID_TXN_STATE after a coordinator failover
                raise ProducerFailed("forced by the test")
            return TransactionResult(Outcome.FAILED, "forced by the test")
        return real(producer, consumer, outputs, offsets)

    monkeypatch.setattr(runner, "run_transaction", second_fails)
    proc = Counting(settings)
    run_processor(proc, settings, [src], "counting", batch_size=10, stop=StopFlag(),
                  idle_exit_after=20, until_read_to_end=True)

    out = [m.value() for m in read_all(settings, ALERT_COMMANDS.physical(settings))]
    assert out == values  # each once, in order: the failed batch was not lost nor doubled
    repeated = [o for o in set(proc.seen) if proc.seen.count(o) > 1]
    assert repeated, "the failed batch was processed only once: the failure was not forced"
    assert proc.seen.count(repeated[0]) == 2
    # the store was rolled back with the failed batch: 40 counted, not 40 + the repeat
    assert int(read_all(settings, VALIDATION_STATE.physical(settings))[-1].value()) == 40
    assert committed_and_end(settings, src, "counting") == (40, 40)


def test_one_message_at_a_time_commits_exactly_past_each_message(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    src = GATEWAY_READINGS.physical(settings)
    values = [b"m-%d" % i for i in range(10)]
    values[3] = b"boom"
    produce_all(settings, [Output(src, b"k", v, partition=0) for v in values])
    real = runner.run_transaction
    commits: list[int] = []

    def recording(producer, consumer, outputs, offsets):  # noqa: ANN001, ANN202
        commits.extend(tp.offset for tp in offsets if tp.partition == 0 and tp.topic == src)
        return real(producer, consumer, outputs, offsets)

    monkeypatch.setattr(runner, "run_transaction", recording)
    run_processor(Counting(settings), settings, [src], "counting", batch_size=10, stop=StopFlag(),
                  idle_exit_after=20, until_read_to_end=True)

    # the batch holding "boom" failed, then one transaction per message, each past itself only
    # (the old loop committed the consumer's position, past the whole batch, at once)
    assert commits[:4] == [1, 2, 3, 4]
    assert commits == sorted(set(commits))
    assert committed_and_end(settings, src, "counting") == (10, 10)
    out = [m.value() for m in read_all(settings, ALERT_COMMANDS.physical(settings))]
    assert out == [v for v in values if v != b"boom"]


def test_partitions_paused_for_a_carried_batch_resume_when_a_rebalance_dropped_it(settings: Settings) -> None:
    """Regression (the broker-restart fault run): ingest carried a batch, paused its partitions,
    a rebalance right after dropped the batch, and the partitions it kept stayed paused: the
    group read nothing more for good."""
    src = GATEWAY_READINGS.physical(settings)
    produce_all(settings, [Output(src, b"k", b"first", partition=0)])
    consumer = Consumer(consumer_config(settings, "carry"))
    try:
        consumer.assign([TopicPartition(src, 0, 0)])
        first = []
        deadline = time.monotonic() + 20
        while not first and time.monotonic() < deadline:
            first = [m for m in consumer.consume(10, 0.5) if m.error() is None]
        carry = runner.Carry()
        carry.hold(consumer, first)  # the batch did not commit: paused, kept
        carry.drop(consumer.assignment())  # a rebalance: the partition's new owner re-reads it
        produce_all(settings, [Output(src, b"k", b"second", partition=0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            got = [m.value() for m in carry.take(consumer, [m for m in consumer.consume(10, 0.5)
                                                                if m.error() is None])]
    finally:
        consumer.close()
    assert got == [b"second"]  # consuming resumed; the dropped batch is not handed back


def test_a_carried_batch_dropped_by_a_real_rebalance_leaves_no_partition_paused(settings: Settings) -> None:
    """Regression (the broker-restart fault run): a copy carried a batch (partitions paused),
    then a group rebalance revoked everything and, seconds later, assigned it again. The loop
    ran between the two with nothing assigned; resuming that empty assignment did nothing, and
    librdkafka kept the re-assigned partitions paused: the copy read nothing more, silently."""
    src = GATEWAY_READINGS.physical(settings)
    group = "carry-rebalance"
    carry = runner.Carry()
    a = Consumer(consumer_config(settings, group))
    a.subscribe([src], on_revoke=lambda _c, parts: carry.drop(parts, a))  # as the loop does

    def step(consumer: Consumer) -> list[bytes]:  # one turn of the loop: take, then gather
        return [m.value() for m in carry.take(consumer, [m for m in consumer.consume(10, 0.2)
                                                         if m.error() is None])]

    try:
        produce_all(settings, [Output(src, b"k", b"first-%d" % p, partition=p) for p in range(4)])
        first: list = []
        deadline = time.monotonic() + 30
        while len(first) < 4 and time.monotonic() < deadline:
            first += [m for m in a.consume(10, 0.5) if m.error() is None]
        assert len(first) == 4
        carry.hold(a, first)  # the batch did not commit: paused, kept
        b = Consumer(consumer_config(settings, group))
        b.subscribe([src])
        joined_at = time.monotonic() + 3  # b asks to join; a learns of the rebalance by heartbeat,
        while time.monotonic() < joined_at:  # so its next poll serves the revoke, before the take
            b.poll(0.2)
        deadline = time.monotonic() + 30
        while not b.assignment() and time.monotonic() < deadline:  # the rebalance, both polling
            step(a)
            b.poll(0.2)
        assert b.assignment(), "the second copy never joined"
        b.close()  # and it leaves: a gets every partition back
        produce_all(settings, [Output(src, b"k", b"second-%d" % p, partition=p) for p in range(4)])
        got: list[bytes] = []
        deadline = time.monotonic() + 40
        while len([v for v in got if v.startswith(b"second")]) < 4 and time.monotonic() < deadline:
            got += step(a)
    finally:
        a.close()
    assert sorted(v for v in got if v.startswith(b"second")) == [b"second-%d" % p for p in range(4)]


def test_a_fatal_error_after_the_commit_went_through_neither_repeats_the_batch_nor_loses_its_state(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The ambiguous case: the producer fails fatally once its transaction has committed (the
    # commit's answer lost). The group's committed offsets say so: nothing is carried, and the
    # store, rolled back with the failure, is reloaded from its changelog.
    src = GATEWAY_READINGS.physical(settings)
    values = [b"m-%d" % i for i in range(40)]
    produce_all(settings, [Output(src, b"k", v, partition=0) for v in values])
    real = runner.run_transaction
    calls: list[int] = []

    def second_commits_then_fails(producer, consumer, outputs, offsets):  # noqa: ANN001, ANN202
        calls.append(len(outputs))
        result = real(producer, consumer, outputs, offsets)
        if len(calls) == 2 and outputs:
            assert result.outcome is Outcome.COMMITTED
            raise ProducerFailed("forced by the test, after the commit")
        return result

    monkeypatch.setattr(runner, "run_transaction", second_commits_then_fails)
    proc = Counting(settings)
    run_processor(proc, settings, [src], "counting", batch_size=10, stop=StopFlag(),
                  idle_exit_after=20, until_read_to_end=True)

    out = [m.value() for m in read_all(settings, ALERT_COMMANDS.physical(settings))]
    assert out == values  # each once: the committed batch was not carried
    assert sorted(proc.seen) == list(range(40))  # nothing processed twice
    # had the store not been reloaded, the 10 messages of the second batch would be missing
    assert int(read_all(settings, VALIDATION_STATE.physical(settings))[-1].value()) == 40
    assert committed_and_end(settings, src, "counting") == (40, 40)

