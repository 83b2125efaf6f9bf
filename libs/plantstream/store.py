"""The one state store: per-partition key/value state, changelogged inside the transaction.

Every stateful service keeps its state here (ingest's seen batch ids, validation's last
timestamps, anomaly's detectors, maintenance's rule windows and alert books). Guarantee:

- A change is *pending* until the Kafka transaction that carries the batch's outputs and
  input offsets commits. :meth:`changelog` turns the keys changed since the last commit (and
  only those) into records for the store's compacted changelog topic, pinned to the input
  partition the state belongs to; :class:`plantstream.runner.run_processor` adds them to the
  same transaction. So state, outputs and offsets move together: a crash at any moment
  leaves the changelog exactly in step with the committed input offsets.
- :meth:`aborted` rolls pending changes back to the last committed value (live objects that
  were changed are dropped and re-decoded from their committed bytes on the next read), so
  the batch can be processed again from the same state.
- On assignment the partition's state is rebuilt by reading its changelog partition with
  ``read_committed`` up to the end (tombstones delete); values are decoded lazily on first
  read, so taking over a partition costs one read of its changelog, not a decode of it.

Values are encoded by the service (Avro records from ``schemas/``, detector trees with
:mod:`plantstream.statecodec`); nothing read back is unpickled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from plantstream.changelog import read_changelog
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import TopicSpec

log = logging.getLogger(__name__)

V = TypeVar("V")
_DELETED = object()


class PartitionStore(Generic[V]):
    """Key/value state per input partition, with ``encode(key, value) -> bytes`` and
    ``decode(key, bytes) -> value`` (return None from decode to treat a record as absent,
    e.g. a snapshot of another model version)."""

    def __init__(self, settings: Settings, changelog: TopicSpec, encode: Callable[[bytes, V], bytes],
                 decode: Callable[[bytes, bytes], V | None], name: str | None = None) -> None:
        self.settings = settings
        self.topic = changelog.physical(settings)
        self.name = name or changelog.name
        self._encode = encode
        self._decode = decode
        self._bytes: dict[int, dict[bytes, bytes]] = {}   # committed values, per partition
        self._live: dict[int, dict[bytes, V]] = {}        # decoded or changed values
        self._dirty: dict[tuple[int, bytes], object] = {}  # changed since the last commit
        self._pending: dict[tuple[int, bytes], bytes | None] = {}  # encoded, in the open txn

    # reading and writing ----------------------------------------------------------------------
    def get(self, partition: int, key: bytes) -> V | None:
        live = self._live.get(partition)
        if live is None:
            return None
        value = live.get(key)
        if value is not None:
            return value
        if self._dirty.get((partition, key)) is _DELETED:
            return None
        raw = self._bytes[partition].get(key)
        if raw is None:
            return None
        decoded = self._decode(key, raw)
        if decoded is not None:
            live[key] = decoded
        return decoded

    def put(self, partition: int, key: bytes, value: V) -> None:
        """Set (or mark as changed, after mutating it in place) the value of ``key``."""
        self._require(partition)[key] = value
        self._dirty[(partition, key)] = value

    def delete(self, partition: int, key: bytes) -> None:
        self._require(partition).pop(key, None)
        self._dirty[(partition, key)] = _DELETED

    def keys(self, partition: int) -> Iterator[bytes]:
        """Keys of ``partition``, committed ones first in changelog order, then new ones."""
        committed = self._bytes.get(partition, {})
        for key in list(committed):
            if self._dirty.get((partition, key)) is not _DELETED:
                yield key
        for key in list(self._live.get(partition, {})):
            if key not in committed:
                yield key

    def partitions(self) -> list[int]:
        return sorted(self._bytes)

    def owns(self, partition: int) -> bool:
        return partition in self._bytes

    def __len__(self) -> int:
        return sum(len(b) for b in self._bytes.values()) + sum(
            1 for (p, k), v in self._dirty.items() if v is not _DELETED and k not in self._bytes.get(p, {}))

    def _require(self, partition: int) -> dict[bytes, V]:
        live = self._live.get(partition)
        if live is None:  # a partition the loop did not announce: state starts empty
            self._bytes[partition] = {}
            live = self._live[partition] = {}
        return live

    # the transaction ---------------------------------------------------------------------------
    def changelog(self) -> list[Output]:
        """Changelog records of the keys changed since the last commit."""
        outs = []
        for (partition, key), value in self._dirty.items():
            raw = None if value is _DELETED else self._encode(key, value)  # type: ignore[arg-type]
            self._pending[(partition, key)] = raw
            outs.append(Output(self.topic, key, raw, partition=partition))
        return outs

    def committed(self) -> None:
        for (partition, key), raw in self._pending.items():
            committed = self._bytes.get(partition)
            if committed is None:
                continue  # partition revoked meanwhile
            committed.pop(key, None)  # a rewritten key moves to the end, as in the changelog
            if raw is not None:
                committed[key] = raw
        self._pending.clear()
        self._dirty.clear()

    def aborted(self) -> None:
        for partition, key in self._dirty:
            live = self._live.get(partition)
            if live is not None:
                live.pop(key, None)  # re-decoded from its committed bytes when read again
        self._pending.clear()
        self._dirty.clear()

    # partitions --------------------------------------------------------------------------------
    def assign(self, partitions: list[int]) -> int:
        """Rebuild ``partitions`` from the changelog; return how many keys were loaded."""
        for p in partitions:
            self._bytes[p] = {}
            self._live[p] = {}
        for msg in read_changelog(self.settings, self.topic, partitions):
            self.load(msg.partition(), msg.key(), msg.value())
        loaded = sum(len(self._bytes[p]) for p in partitions)
        log.info("state restored", extra={"store": self.name, "partitions": partitions, "keys": loaded})
        return loaded

    def load(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Apply one committed changelog record (None value: a tombstone) to ``partition``."""
        if key is None:
            return
        committed = self._bytes.setdefault(partition, {})
        self._live.setdefault(partition, {}).pop(key, None)
        committed.pop(key, None)  # keep changelog order: a rewritten key moves to the end
        if value is not None:
            committed[key] = value

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self._bytes.pop(p, None)
            self._live.pop(p, None)
        self._dirty = {k: v for k, v in self._dirty.items() if k[0] not in partitions}
        self._pending = {k: v for k, v in self._pending.items() if k[0] not in partitions}
