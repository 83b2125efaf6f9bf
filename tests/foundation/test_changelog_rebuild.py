"""A partition's state is rebuilt from everything committed to its changelog, even when a
killed copy left a transaction open in front of the new owner's committed ones.

A ``read_committed`` reader stops at the last stable offset, which stays behind the open
transaction until the broker aborts it; reading only to the first end-of-partition would
return a state older than the committed input offsets (seen in the broker-restart e2e run:
the anomaly detector resumed from a stale snapshot and diverged by one row)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from plantstream.changelog import read_changelog
from plantstream.kafka import consumer_config, producer_config
from plantstream.runner import Processor, _on_assign
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import READINGS_VALID, VALIDATION_STATE

pytestmark = pytest.mark.integration


def test_rebuild_waits_for_an_open_transaction_and_returns_the_later_commits(settings: Settings) -> None:
    topic = VALIDATION_STATE.physical(settings)
    zombie = Producer(producer_config(settings, **{"transactional.id": "zombie-" + settings.topic_prefix,
                                                   "transaction.timeout.ms": 2000}))
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic, b"from the killed copy", b"k1", partition=0)
    zombie.flush(10)  # written, never committed: the copy "dies" here
    owner = Producer(producer_config(settings, **{"transactional.id": "owner-" + settings.topic_prefix}))
    owner.init_transactions(30)
    owner.begin_transaction()
    owner.produce(topic, b"committed by the new owner", b"k2", partition=0)
    owner.commit_transaction(30)
    started = time.monotonic()
    got = [(m.key(), m.value()) for m in read_changelog(settings, topic, [0], timeout=90)]
    assert got == [(b"k2", b"committed by the new owner")]  # the aborted record is never seen
    assert time.monotonic() - started < 90


def test_a_new_owner_restores_after_the_previous_owners_offsets_are_stable(settings: Settings) -> None:
    """The previous owner froze between ``send_offsets_to_transaction`` and
    ``commit_transaction`` with its last changelog record still in its client: the new owner's
    assignment step waits for the stable offsets, so the state it restores holds that record
    (restoring first gave the older state next to the zombie's newer offsets)."""
    source = READINGS_VALID.physical(settings)
    store: PartitionStore[bytes] = PartitionStore(settings, VALIDATION_STATE, lambda _k, v: v,
                                                  lambda _k, v: v)

    class Stateful(Processor):
        stores = (store,)

    owner = Consumer(consumer_config(settings, "owner-" + settings.topic_prefix))
    owner.subscribe([source])
    deadline = time.monotonic() + 30
    while not owner.assignment():
        assert time.monotonic() < deadline, "never assigned"
        owner.poll(0.2)
    zombie = Producer(producer_config(settings, **{"transactional.id": "zombie-" + settings.topic_prefix}))
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.send_offsets_to_transaction([TopicPartition(source, 0, 7)], owner.consumer_group_metadata(), 10)

    def thaw() -> None:  # the zombie wakes up, sends its last state change and commits
        time.sleep(3)
        zombie.produce(store.topic, b"state after offset 6", b"machine", partition=0)
        zombie.commit_transaction(30)

    late = threading.Thread(target=thaw)
    late.start()
    started = time.monotonic()
    _on_assign(Stateful(), owner, [TopicPartition(source, 0)])
    waited = time.monotonic() - started
    late.join()
    [committed] = owner.committed([TopicPartition(source, 0)], timeout=10)
    owner.close()
    assert committed.offset == 7
    assert store.get(0, b"machine") == b"state after offset 6"
    assert waited >= 2.5, f"restored after {waited:.1f}s, before the zombie committed"
