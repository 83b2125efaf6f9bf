"""Duplicate batch detection that survives restarts and partition moves.

The batch ids accepted within the dedup window live in ingest's
:class:`~plantstream.store.PartitionStore` (one key per batch, value an Avro
``ingest_seen_batch``), so they commit, roll back and are rebuilt with the batch that carried
them. Ids that leave the window are deleted (tombstones in the same transaction), which
keeps the compacted changelog as small as the window.
"""

from __future__ import annotations

from plantstream.avro import AvroCodec
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import INGEST_SEEN_BATCHES

SeenKey = tuple[str, str, str, str]  # tenant, site, machine, batch_id
EXPIRE_EVERY_US = 5_000_000


Seen = tuple[SeenKey, int]  # the batch and when it was accepted


def store_key(key: SeenKey) -> bytes:
    tenant, site, machine, batch_id = key
    return f"{tenant}/{site}/{machine}\x1f{batch_id}".encode("utf-8", errors="backslashreplace")


class SeenBatches:
    """Per input partition: accepted batch key -> ingest time (µs), oldest first."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self.codec = codec or AvroCodec()
        self.window_us = int(settings.dedup_window_s * 1_000_000)
        self.store: PartitionStore[Seen] = PartitionStore(
            settings, INGEST_SEEN_BATCHES, self._encode, self._decode, name="ingest.seen-batches")
        self._expired_at = 0

    def check_and_add(self, partition: int, key: SeenKey, now_us: int) -> bool:
        """True if ``key`` was already accepted within the window (a duplicate); else remember it."""
        skey = store_key(key)
        seen = self.store.get(partition, skey)
        if seen is not None and seen[1] >= now_us - self.window_us:
            return True
        self.store.put(partition, skey, (key, now_us))
        return False

    def expire(self, now_us: int) -> int:
        """Delete ids older than the window (at most every few seconds); return how many."""
        if now_us - self._expired_at < EXPIRE_EVERY_US:
            return 0
        self._expired_at = now_us
        horizon = now_us - self.window_us
        gone = 0
        for p in self.store.partitions():
            for skey in self.store.keys(p):
                seen = self.store.get(p, skey)
                if seen is not None and seen[1] >= horizon:
                    break  # keys are in acceptance order: the rest are newer
                self.store.delete(p, skey)
                gone += 1
        return gone

    def _encode(self, _skey: bytes, seen: Seen) -> bytes:
        (tenant, site, machine, batch_id), seen_at = seen
        return self.codec.encode("ingest_seen_batch", {"tenant": tenant, "site": site, "machine": machine,
                                                       "batch_id": batch_id, "seen_at": seen_at})

    def _decode(self, _skey: bytes, raw: bytes) -> Seen:
        r = self.codec.decode(raw, "ingest_seen_batch")
        return (r["tenant"], r["site"], r["machine"], r["batch_id"]), int(r["seen_at"])
