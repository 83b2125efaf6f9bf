"""A timer transaction (maintenance's no-data and auto-resolve alerts) consumes nothing, so it
had no input offsets to send, and nothing fenced a zombie's: a copy frozen past its session
and thawed, not yet told its partitions moved on, could commit alerts and state for
partitions another copy owns. The loop now sends the group's committed offsets of the owned
partitions with it: no change for the group, but the group generation goes with them, and a
stale one is refused (KIP-447).

The broker and group are real; the zombie is a member whose group metadata is from before a
rebalance it slept through (its own consumer object, with the metadata it held when it froze)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer
from tx_input import Counting

from plantstream.kafka import Output, consumer_config
from plantstream.runner import _transaction
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS
from plantstream.transaction import Outcome, ProducerFailed
from plantstream.txnguard import transactional_producer

from kafka_io import produce_all, read_all

pytestmark = pytest.mark.integration


class Frozen:
    """A consumer as a frozen copy sees it on waking: the group metadata it held then."""

    def __init__(self, consumer: Consumer, metadata: Any) -> None:
        self.consumer, self.metadata = consumer, metadata

    def consumer_group_metadata(self) -> Any:
        return self.metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


def assigned(*consumers: Consumer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(c.assignment() for c in consumers):
        assert time.monotonic() < deadline, "never assigned"
        for c in consumers:
            c.poll(0.1)


def test_a_zombies_timer_transaction_is_refused(settings: Settings) -> None:
    source, group = GATEWAY_READINGS.physical(settings), "timers-" + settings.topic_prefix
    produce_all(settings, [Output(source, b"k", b"x", partition=p) for p in range(settings.partitions)])
    zombie = Consumer(consumer_config(settings, group))
    zombie.subscribe([source])
    assigned(zombie)
    msgs: list[Any] = []
    deadline = time.monotonic() + 30
    while len(msgs) < settings.partitions:
        assert time.monotonic() < deadline, f"read {len(msgs)} messages"
        msgs += [m for m in zombie.consume(10, 0.5) if m.error() is None]
    processor, producer = Counting(settings), transactional_producer(settings, "timers")
    done = _transaction(producer, zombie, processor, msgs, processor.process(msgs))
    assert done.outcome is Outcome.COMMITTED
    before = zombie.consumer_group_metadata()  # the copy freezes here

    owner = Consumer(consumer_config(settings, group))  # meanwhile another copy joins
    owner.subscribe([source])
    assigned(zombie, owner)

    processor.counts.put(0, b"k", 99)
    alert = Output(processor.out, b"k", b"no data from the gateway", partition=0)
    try:
        outcome = _transaction(producer, Frozen(zombie, before), processor, [], [alert]).outcome
    except ProducerFailed:
        outcome = None
    zombie.close()
    owner.close()
    assert outcome is not Outcome.COMMITTED
    assert b"no data from the gateway" not in [m.value() for m in read_all(settings, processor.out)]
    assert processor.counts.get(0, b"k") == 1  # rolled back to the committed count
