"""Duplicate batch detection that survives restarts and partition moves.

Each input partition keeps the batch ids accepted within the dedup window. New ids are held
as *pending* until the Kafka transaction that carries them commits (``committed``); an
aborted transaction forgets them, since the batches will be consumed again. Every
transaction also writes the ids it accepted to the ``ingest.seen-batches`` changelog,
pinned to the input partition number, so the next owner of a partition rebuilds its ids by
reading that changelog partition from ``now - window``.
"""

from __future__ import annotations

import logging
import time

from plantstream.avro import AvroCodec
from plantstream.changelog import read_changelog
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import INGEST_SEEN_BATCHES

log = logging.getLogger(__name__)

SeenKey = tuple[str, str, str, str]  # tenant, site, machine, batch_id


class SeenBatches:
    """Per input partition: batch key -> ingest time (µs), oldest first."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.codec = codec or AvroCodec()
        self.topic = INGEST_SEEN_BATCHES.physical(settings)
        self.window_us = int(settings.dedup_window_s * 1_000_000)
        self.seen: dict[int, dict[SeenKey, int]] = {}
        self.pending: dict[int, dict[SeenKey, int]] = {}

    def check_and_add(self, partition: int, key: SeenKey, now_us: int) -> bool:
        """True if ``key`` was already accepted within the window (a duplicate); else remember it."""
        committed = self.seen.get(partition)
        if committed is not None and key in committed:
            return True
        pend = self.pending.setdefault(partition, {})
        if key in pend:
            return True
        pend[key] = now_us
        return False

    def changelog(self, now_us: int) -> list[Output]:
        """The pending ids as changelog records, one per input partition."""
        outs = []
        for partition, keys in self.pending.items():
            if not keys:
                continue
            record = {"input_partition": partition, "seen_at": now_us, "batches": [
                {"tenant": t, "site": s, "machine": m, "batch_id": b} for t, s, m, b in keys]}
            outs.append(Output(self.topic, None, self.codec.encode("ingest_seen_batches", record),
                               partition=partition))
        return outs

    def committed(self) -> None:
        for partition, keys in self.pending.items():
            self.seen.setdefault(partition, {}).update(keys)
        self.pending.clear()
        self._expire(time.time_ns() // 1000)

    def aborted(self) -> None:
        self.pending.clear()

    def _expire(self, now_us: int) -> None:
        horizon = now_us - self.window_us
        for ids in self.seen.values():
            while ids:
                first = next(iter(ids))
                if ids[first] >= horizon:
                    break
                del ids[first]

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.seen.pop(p, None)
            self.pending.pop(p, None)

    def rebuild(self, partitions: list[int]) -> int:
        """Load the ids of ``partitions`` from the changelog; return how many were loaded."""
        now_us = time.time_ns() // 1000
        horizon = now_us - self.window_us
        for p in partitions:
            self.seen[p] = {}
        loaded = 0
        for msg in read_changelog(self.settings, self.topic, partitions, since_ms=horizon // 1000):
            rec = self.codec.decode(msg.value(), "ingest_seen_batches")
            if rec["seen_at"] < horizon:
                continue
            ids = self.seen.setdefault(msg.partition(), {})
            for b in rec["batches"]:
                ids[(b["tenant"], b["site"], b["machine"], b["batch_id"])] = rec["seen_at"]
                loaded += 1
        log.info("dedup state rebuilt", extra={"partitions": partitions, "batch_ids": loaded})
        return loaded
