"""The transactional loop's contract, replayed without a broker: process a batch, write the
stores' changelog records, commit; a crash loses the open batch, and a new copy rebuilds its
stores from the committed changelog records and consumes again from the committed offset.

What the loop guarantees (outputs, state and offsets commit together) lets a crash be
simulated exactly: the committed outputs of a crashed-and-restarted run must equal those of
a run that never crashed. (The loop against a real broker is tested by the services' own
integration tests; this isolates the determinism of the processors' logic and state.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from plantstream.kafka import Output
from plantstream.runner import Processor

Batch = Sequence[Message]


def message(topic: str, partition: int, offset: int, key: bytes, value: bytes, ts_ms: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=value, headers=[],
                   timestamp=(TIMESTAMP_CREATE_TIME, ts_ms))


@dataclass
class Committed:
    """What Kafka holds after a run: outputs (changelogs excluded) and each store's changelog."""

    outputs: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    changelogs: dict[str, list[tuple[int, bytes | None, bytes | None]]] = field(default_factory=dict)


def run(make: Callable[[], Processor], batches: list[Batch], crash_at: set[int] = frozenset(),
        partitions: Sequence[int] = (0,)) -> Committed:
    """Run ``batches`` through processors from ``make``; at each batch index in ``crash_at``
    the processor handles the batch but dies before the commit, and a new one takes over."""
    kafka = Committed()
    proc = _start(make, kafka, partitions)
    i = 0
    while i < len(batches):
        outs = list(proc.process(batches[i]))
        for store in proc.stores:
            outs.extend(store.changelog())
        if i in crash_at:
            crash_at = set(crash_at) - {i}
            proc = _start(make, kafka, partitions)  # the open transaction is lost
            continue  # the same batch again: its offsets were not committed
        changelog_topics = {store.topic: store for store in proc.stores}
        for out in outs:
            if out.topic in changelog_topics:
                kafka.changelogs.setdefault(out.topic, []).append((_partition(out), out.key, out.value))
            else:
                kafka.outputs.append((out.topic, out.key, out.value))
        for store in proc.stores:
            store.committed()
        i += 1
    return kafka


def _partition(out: Output) -> int:
    assert out.partition is not None, "changelog records are pinned to their input partition"
    return out.partition


def _start(make: Callable[[], Processor], kafka: Committed, partitions: Sequence[int]) -> Processor:
    proc = make()
    for store in proc.stores:
        for p in partitions:
            for partition, key, value in kafka.changelogs.get(store.topic, []):
                if partition == p:
                    store.load(p, key, value)
    return proc
