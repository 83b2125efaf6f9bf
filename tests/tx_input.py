"""Test input written the way plantstream processors write it: in Kafka transactions (each
leaves a commit marker, an offset never delivered), plus a helper to wait until a consumer
group has committed past given offsets, a small stateful processor (:class:`Counting`) for
the loop's own tests, and the mixed ``readings.valid`` input (committed,
aborted and garbage records) the services' transactional-input tests share."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from anomaly.synthetic import SyntheticMachine, asset_record, stream
from plantstream.assets import publish_assets
from plantstream.avro import AvroCodec
from plantstream.kafka import Output, consumer_config, producer_config
from plantstream.runner import Processor
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import ALERT_COMMANDS, READINGS_REJECTED, READINGS_VALID, VALIDATION_STATE

from kafka_io import read_all

SENSORS = [f"s{i}" for i in range(10)]
MACHINES, SAMPLES, PER_BATCH = 10, 600, 2  # 3,000 records of 20 readings
PER_TRANSACTION = 10


def produce_transactions(settings: Settings, outputs: list[Output], per_transaction: int,
                         abort: bool = False) -> dict[int, int]:
    """Produce ``outputs`` in transactions of ``per_transaction`` records (aborted ones if
    ``abort``); returns the highest offset written per partition."""
    producer = Producer(producer_config(settings, **{"transactional.id": f"test-tx-{uuid.uuid4().hex}"}))
    producer.init_transactions(30)
    last: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())  # type: ignore[attr-defined]

    for i in range(0, len(outputs), per_transaction):
        producer.begin_transaction()
        for out in outputs[i:i + per_transaction]:
            producer.produce(out.topic, out.value, out.key, headers=out.headers, on_delivery=delivered)
        producer.flush(30)
        if abort:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    assert not errors, errors
    return last


def committed(settings: Settings, group: str, topic: str, partitions: int) -> list[int]:
    """The committed offsets of ``topic`` (0 where none) of ``group``, named as for
    :func:`consumer_config` (without the topic prefix); [] while the coordinator loads."""
    c = Consumer(consumer_config(settings, group))
    try:
        return [max(tp.offset, 0) for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)],
                                                       timeout=10)]
    except KafkaException:
        return []
    finally:
        c.close()


def wait_committed_past(settings: Settings, group: str, topic: str, last: dict[int, int],
                        timeout: float, alive: Callable[[], None]) -> float:
    """Seconds until ``group`` has committed every partition of ``topic`` past ``last``
    (offset + 1: the trailing commit marker is never delivered, so it is never committed);
    fails after ``timeout`` saying how far the group got."""
    t0 = time.monotonic()
    done: list[int] = []
    while time.monotonic() - t0 < timeout:
        alive()
        done = committed(settings, group, topic, settings.partitions)
        if done and all(done[p] >= off + 1 for p, off in last.items()):
            return time.monotonic() - t0
        time.sleep(0.5)
    want = {p: off + 1 for p, off in sorted(last.items())}
    raise AssertionError(f"{group} committed {done} of {topic} after {timeout:.0f}s; wanted {want}")


def write_mixed_valid_readings(settings: Settings, codec: AvroCodec) -> dict[int, int]:
    """On ``readings.valid`` (machines in the registry): 1,500 batches in committed
    transactions, one aborted transaction of garbage per machine, 1,500 batches more, then one
    committed garbage record; returns the highest offset written per partition."""
    topic = READINGS_VALID.physical(settings)
    ms = [SyntheticMachine("acme", "plant1", f"m{k}", SENSORS, seed=k) for k in range(MACHINES)]
    publish_assets(settings, [asset_record(m) for m in ms])
    records = [Output(topic, k, codec.encode("reading_batch", r)) for k, r in stream(ms, SAMPLES, PER_BATCH)]
    assert len(records) == 3000
    aborted = [Output(topic, m.key, b"aborted garbage " + m.key) for m in ms]
    garbage = Output(topic, ms[0].key, b"committed garbage")

    last = produce_transactions(settings, records[:1500], PER_TRANSACTION)
    produce_transactions(settings, aborted, PER_TRANSACTION, abort=True)
    for part in (produce_transactions(settings, records[1500:], PER_TRANSACTION),
                 produce_transactions(settings, [garbage], 1)):
        last |= {p: max(off, last.get(p, -1)) for p, off in part.items()}
    return last


def dead_letter_originals(settings: Settings, codec: AvroCodec) -> list[bytes]:
    """The original bytes of every dead letter on ``readings.rejected``."""
    dead = read_all(settings, READINGS_REJECTED.physical(settings))
    return [codec.decode(m.value(), "dead_letter")["original"] for m in dead]


class Counting(Processor):
    """Copies every message and counts messages per key in a store; ``boom`` raises."""

    name = "counting"

    def __init__(self, settings: Settings) -> None:
        self.out = ALERT_COMMANDS.physical(settings)
        self.counts: PartitionStore[int] = PartitionStore(
            settings, VALIDATION_STATE, lambda _k, v: str(v).encode(), lambda _k, b: int(b))
        self.stores = (self.counts,)
        self.seen: list[int] = []  # offsets handed to process(), in order, repeats included

    def process(self, messages: Sequence[Message]) -> list[Output]:
        outs = []
        for m in messages:
            self.seen.append(m.offset())
            self.counts.put(m.partition(), m.key(), (self.counts.get(m.partition(), m.key()) or 0) + 1)
            if m.value() == b"boom":
                raise ValueError("boom")
            outs.append(Output(self.out, m.key(), m.value(), partition=0))
        return outs
