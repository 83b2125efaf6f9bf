"""Test helpers that produce to and read from the real broker, failing fast (never hanging)
when the broker is gone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from plantstream.kafka import Output, ReliableProducer, consumer_config, producer_config, watermarks
from plantstream.settings import Settings


def produce_all(settings: Settings, outputs: list[Output]) -> int:
    producer = ReliableProducer(settings)
    for out in outputs:
        producer.produce(out)
    return producer.flush(30)


def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Message]], bool] | None = None,
    timeout: float = 30.0,
    idle: float = 3.0,
    alive: Callable[[], None] | None = None,
) -> list[Message]:
    """All committed messages of ``topic`` from the beginning: until ``until(msgs)`` is true, or
    (without ``until``) until nothing new came for ``idle`` seconds. ``alive`` is called each
    poll and should raise if the broker died."""
    consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    msgs: list[Message] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if alive:
                alive()
            batch = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            if batch:
                msgs.extend(batch)
                last_new = time.monotonic()
            if until is not None and until(msgs):
                return msgs
            if until is None and consumer.assignment() and time.monotonic() - last_new > idle:
                return msgs
        if until is not None:
            raise AssertionError(f"timed out after {timeout}s reading {topic}: got {len(msgs)} messages")
        return msgs
    finally:
        consumer.close()


def read_all(settings: Settings, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every committed message of ``topic`` from the beginning up to its end as of now (the
    last stable offset: an open transaction's records are not waited for). No consumer group,
    no idle wait: for reading what finished services wrote."""
    consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex}",
                                        **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        pending, msgs = set(meta.partitions), []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s reading {topic} to its end: "
                                     f"partitions {sorted(pending)} not at the end")
            for m in consumer.consume(1000, 0.1):
                err = m.error()
                if err is None:
                    msgs.append(m)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
        return sorted(msgs, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(consumer_config(settings, f"test-offsets-{uuid.uuid4().hex}"))
    try:
        return [watermarks(consumer, TopicPartition(topic, p))[1] for p in range(partitions)]
    finally:
        consumer.close()


def produce_error(s: Settings, topic: str) -> KafkaError | None:
    """Produce one record as ``s``'s principal; the delivery error (None: written)."""
    errors: list[KafkaError | None] = []
    producer = Producer(producer_config(s, **{"message.timeout.ms": 10_000}))
    producer.produce(topic, b"x", b"k", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert errors, "no delivery report within 15 s"
    return errors[0]


def read_error(s: Settings, topic: str, group: str | None = None) -> KafkaError | None:
    """Read ``topic`` in a consumer group as ``s``'s principal; the first error (None: it
    reached the end of a partition)."""
    conf = consumer_config(s, group or f"probe-{uuid.uuid4().hex[:6]}", **{"enable.partition.eof": True})
    consumer = Consumer(conf)
    try:
        consumer.subscribe([topic])
        for _ in range(100):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is None:
                continue
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return None
            return msg.error()
        raise AssertionError(f"neither the end of {topic} nor an error within 20 s")
    finally:
        consumer.close()
