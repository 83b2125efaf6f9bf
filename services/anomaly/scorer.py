"""The service's logic without Kafka: one reading_batch message in, anomaly events out.

Why separate from the faust app: this is the part worth unit-testing and benchmarking; the
app only moves bytes between topics and the model table. Machines are created on first
sight (sensors from the asset registry when it knows the machine, else from the first
rows), restored from their snapshot when one exists, and dropped when their partition
moves to another copy of the service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anomaly.events import MachineId
from anomaly.machine import MachineDetector
from anomaly.state import MachineState, encode_snapshot, restore
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import Output
from plantstream.readingbatch import decode_readings
from plantstream.topics import machine_key

log = logging.getLogger(__name__)

SnapshotLookup = Callable[[bytes], bytes | None]


@dataclass
class Outcome:
    """What one input message produced."""

    events: list[bytes] = field(default_factory=list)  # anomaly_event, Avro
    dead_letter: Output | None = None  # to readings.rejected
    snapshot: bytes | None = None  # model_snapshot, Avro, to store under the message key
    readings: int = 0
    mid: MachineId | None = None
    key: bytes | None = None  # the machine key (the message key, or derived when it is missing)


@dataclass
class ScorerConfig:
    update_seconds: float = 60.0
    snapshot_rows: int = 2000
    snapshot_seconds: float = 30.0


class Scorer:
    """Per-machine states of the partitions this copy owns."""

    def __init__(
        self,
        new_detector: Callable[[list[str] | None], MachineDetector],
        config: ScorerConfig,
        dead: DeadLetters,
        source_topic: str,
        registry: AssetRegistry | None = None,
        codec: AvroCodec | None = None,
    ) -> None:
        self.new_detector = new_detector
        self.config = config
        self.registry = registry
        self.codec = codec or AvroCodec()
        self.source_topic = source_topic
        self.dead = dead
        self.states: dict[bytes, MachineState] = {}
        self.partition_of: dict[bytes, int] = {}
        self.restored = 0
        self.created = 0
        probe = new_detector(None)
        self.model, self.model_version = probe.model_name, probe.model_version
        self._update_us = int(config.update_seconds * 1e6)
        self._names: dict[bytes, str] = {}

    def handle(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int,
        lookup: SnapshotLookup,
    ) -> Outcome:
        """Decode one reading_batch, score its rows, return events and a due snapshot."""
        out = Outcome()
        try:
            batch = decode_readings(value or b"", self.codec)
        except DecodeError as exc:
            src = Source(self.source_topic, partition, offset, value)
            out.dead_letter = self.dead.make(src, exc.reason, exc.detail)
            return out
        mid = (batch.tenant, batch.site, batch.machine)
        out.mid = mid
        skey = key or machine_key(*mid)
        out.key = skey
        state = self.states.get(skey)
        if state is None:
            state = self._open(skey, mid, lookup)
        self.partition_of[skey] = partition
        names = self._names
        sensors = [names.get(b) or self._name(b) for b in batch.sensors]
        out.readings = len(sensors)
        events = state.feed(sensors, batch.ts.tolist(), batch.values.tolist(), batch.quality,
                            self._update_us)
        out.events = [self.codec.encode("anomaly_event", e) for e in events]
        if state.snapshot_due(self.config.snapshot_rows, self.config.snapshot_seconds, time.monotonic()):
            out.snapshot = encode_snapshot(self.codec, state)
        return out

    def _name(self, raw: bytes) -> str:
        """Sensor id from its UTF-8 bytes (interned: a few hundred distinct ids at most)."""
        name = raw.decode("utf-8", errors="replace")
        if len(self._names) < 100_000:
            self._names[raw] = name
        return name

    def _open(self, skey: bytes, mid: MachineId, lookup: SnapshotLookup) -> MachineState:
        data = lookup(skey)
        state = None
        if data is not None:
            try:
                state = restore(self.codec, data, self.model, self.model_version)
            except DecodeError as exc:
                log.error("unreadable model snapshot ignored; starting a fresh model",
                          extra={"machine": "/".join(mid), "error": str(exc)})
        if state is not None:
            self.restored += 1
            log.info("model restored", extra={"machine": "/".join(mid), "rows": state.detector.n_rows})
        else:
            sensors = sorted(self.registry.sensors(mid)) if self.registry is not None else []
            state = MachineState(mid, self.new_detector(sensors or None))
            if sensors:
                state.rows.expected = frozenset(sensors)
            self.created += 1
            log.info("model created", extra={"machine": "/".join(mid), "sensors": sensors or "from data"})
        self.states[skey] = state
        return state

    def snapshot_all(self, partitions: set[int] | None = None) -> list[tuple[bytes, int, bytes]]:
        """``(key, partition, snapshot)`` of every machine with unsaved rows (for shutdown)."""
        out = []
        for k, st in self.states.items():
            p = self.partition_of.get(k, -1)
            if st.rows_since_snapshot and (partitions is None or p in partitions):
                out.append((k, p, encode_snapshot(self.codec, st)))
        return out

    def drop_partitions(self, partitions: set[int]) -> int:
        """Forget machines of partitions this copy lost; their new owner restores them."""
        gone = [k for k, p in self.partition_of.items() if p in partitions]
        for k in gone:
            self.states.pop(k, None)
            self.partition_of.pop(k, None)
        return len(gone)

    def memory_report(self) -> dict[str, Any]:
        """Per-machine model memory (snapshot bytes): machines, max, mean, total."""
        sizes = [st.memory_bytes() for st in self.states.values()]
        return {"machines": len(sizes), "bytes_max": max(sizes, default=0),
                "bytes_mean": sum(sizes) / len(sizes) if sizes else 0.0, "bytes_total": sum(sizes)}

    def failed(self, value: bytes | None, partition: int, offset: int, exc: Exception) -> Outcome:
        """Outcome for a message whose scoring raised: a dead letter that says so."""
        detail = f"anomaly service failed on this batch: {exc!r}; report it, then replay the dead letter"
        src = Source(self.source_topic, partition, offset, value)
        return Outcome(dead_letter=self.dead.make(src, "processing_error", detail))
