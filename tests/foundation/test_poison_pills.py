"""Poison pills in the processor loop: a message whose processing raises, or whose outputs
Kafka refuses (over the broker's message size), is dead-lettered with the reason and the
exception, its state changes are rolled back, the other messages of its batch go through,
and the partition keeps moving (its committed offset reaches the log end)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from plantstream.avro import AvroCodec
from plantstream.kafka import Output, consumer_config
from plantstream.runner import Processor, StopFlag, run_processor
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import ALERT_COMMANDS, GATEWAY_READINGS, READINGS_REJECTED, VALIDATION_STATE

from kafka_io import produce_all, read_all, read_topic

pytestmark = pytest.mark.integration
# over the broker's message.max.bytes (2 MiB) under the client's 4 MiB; random: lz4 cannot shrink it
HUGE = random.Random(1).randbytes(3 * 1024 * 1024)


class Picky(Processor):
    """Counts messages per key in a store; "boom" raises after changing the state, "huge"
    produces an output the broker refuses."""

    name = "picky"

    def __init__(self, settings: Settings) -> None:
        self.out = ALERT_COMMANDS.physical(settings)
        self.counts: PartitionStore[int] = PartitionStore(
            settings, VALIDATION_STATE, lambda _k, v: str(v).encode(), lambda _k, b: int(b))
        self.stores = (self.counts,)

    def process(self, messages: Sequence[Message]) -> list[Output]:
        outs = []
        for m in messages:
            n = (self.counts.get(m.partition(), m.key()) or 0) + 1
            self.counts.put(m.partition(), m.key(), n)
            if m.value() == b"boom":
                raise ValueError("cannot handle boom")
            value = HUGE if m.value() == b"huge" else m.value()
            outs.append(Output(self.out, m.key(), value))
        return outs


def test_bad_messages_are_dead_lettered_and_the_rest_goes_through(settings: Settings) -> None:
    src = GATEWAY_READINGS.physical(settings)
    values = [b"ok-%d" % i for i in range(30)]
    values[7], values[19] = b"boom", b"huge"
    produce_all(settings, [Output(src, b"k", v) for v in values])
    proc = Picky(settings)
    run_processor(proc, settings, [src], "picky", stop=StopFlag(), idle_exit_after=10, until_read_to_end=True)

    out = read_topic(settings, ALERT_COMMANDS.physical(settings), until=lambda ms: len(ms) >= 28)
    assert [m.value() for m in out] == [v for v in values if v not in (b"boom", b"huge")]
    dead = read_topic(settings, READINGS_REJECTED.physical(settings), until=lambda ms: len(ms) >= 2)
    letters = sorted((AvroCodec().decode(m.value(), "dead_letter") for m in dead),
                     key=lambda d: d["source_offset"])
    assert [(d["reason"], d["stage"], d["source_offset"], d["original"]) for d in letters] == [
        ("processing_error", "picky", 7, b"boom"), ("output_refused", "picky", 19, b"huge")]
    assert "ValueError: cannot handle boom" in letters[0]["detail"]
    assert "too large" in letters[1]["detail"].lower()
    # the failed messages' state changes were rolled back: 28 counted, not 30
    changelog = read_all(settings, VALIDATION_STATE.physical(settings))
    assert int(changelog[-1].value()) == 28
    consumer = Consumer(consumer_config(settings, "picky"))
    try:
        part = TopicPartition(src, letters[0]["source_partition"])  # the key's partition
        [done] = consumer.committed([part], timeout=10)
        _, end = consumer.get_watermark_offsets(part, timeout=10)
    finally:
        consumer.close()
    assert done.offset == end == 30  # the partition moved past both poison pills
