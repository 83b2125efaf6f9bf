"""A transactional producer that can neither finish nor abort its transaction (seen after a
broker restart: its coordinator connection stayed stuck) is declared failed, so the loop
replaces it (and asks the group what committed) instead of retrying on it for ever. Pure
logic: a stand-in for the producer's transaction calls."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from plantstream.kafka import Output
from plantstream.transaction import ABORT_TRIES, Outcome, ProducerFailed, run_transaction


class StuckProducer:
    """Every commit times out; aborts time out ``abort_failures`` times, then succeed."""

    def __init__(self, abort_failures: int) -> None:
        self.abort_failures = abort_failures
        self.aborts = self.begins = 0

    def begin_transaction(self) -> None:
        self.begins += 1

    def produce(self, *args: object, **kwargs: object) -> None:
        pass

    def poll(self, timeout: float = 0) -> int:
        return 0

    def commit_transaction(self, timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True))

    def abort_transaction(self, timeout: float) -> None:
        self.aborts += 1
        if self.aborts <= self.abort_failures:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort timed out", retriable=True))


OUT = [Output("t", b"k", b"v")]


def test_a_producer_that_cannot_abort_is_declared_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("plantstream.transaction.time.sleep", lambda s: None)
    stuck = StuckProducer(abort_failures=10**6)
    with pytest.raises(ProducerFailed, match="cannot be aborted"):
        run_transaction(stuck, None, OUT, [])  # type: ignore[arg-type]
    assert stuck.begins == 1 and stuck.aborts == ABORT_TRIES  # no new transaction on a stuck producer


def test_an_abort_that_times_out_once_is_asked_again_and_the_batch_retried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("plantstream.transaction.time.sleep", lambda s: None)
    slow = StuckProducer(abort_failures=1)
    result = run_transaction(slow, None, OUT, [])  # type: ignore[arg-type]
    assert result.outcome is Outcome.FAILED  # every commit timed out: rolled back, consumed again
    assert slow.begins == 5 and slow.aborts == 6  # the first abort was asked twice, the rest once
