"""The service's logic without Kafka: reading_batch messages in, anomaly events out.

Why separate from the processor: this is the part worth unit-testing and benchmarking; the
processor only moves bytes between topics. Machines are created on first sight (sensors from
the asset registry when it knows the machine, else from the first rows) and kept in the
anomaly service's :class:`~plantstream.store.PartitionStore` (restored from the
``anomaly-models-changelog`` when a partition is assigned; every machine a batch touched is
written back in that batch's transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anomaly.events import MachineId
from anomaly.machine import MachineDetector
from anomaly.regime import warning_limits
from anomaly.state import MachineState, encode_snapshot, restore
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import Output
from plantstream.readingbatch import decode_readings
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import ANOMALY_MODELS, machine_key

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one input message produced."""

    events: list[bytes] = field(default_factory=list)  # anomaly_event, Avro
    dead_letter: Output | None = None  # to readings.rejected
    readings: int = 0
    mid: MachineId | None = None
    key: bytes | None = None  # the machine key (the message key, or derived when it is missing)


@dataclass
class ScorerConfig:
    update_seconds: float = 60.0


class Scorer:
    """Per-machine states of the partitions this copy owns."""

    def __init__(
        self,
        new_detector: Callable[[list[str] | None], MachineDetector],
        config: ScorerConfig,
        dead: DeadLetters,
        source_topic: str,
        settings: Settings,
        registry: AssetRegistry | None = None,
        codec: AvroCodec | None = None,
    ) -> None:
        self.new_detector = new_detector
        self.config = config
        self.registry = registry
        self.codec = codec or AvroCodec()
        self.source_topic = source_topic
        self.dead = dead
        self.restored = 0
        self.created = 0
        probe = new_detector(None)
        self.model, self.model_version = probe.model_name, probe.model_version
        self.store: PartitionStore[MachineState] = PartitionStore(
            settings, ANOMALY_MODELS, self._encode, self._decode, name="anomaly.models")
        self._update_us = int(config.update_seconds * 1e6)
        self._names: dict[bytes, str] = {}

    def handle(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> Outcome:
        """Decode one reading_batch, score its rows, return its events."""
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
        state = self.store.get(partition, skey)
        if state is None:
            state = self._new(mid)
        self.store.put(partition, skey, state)  # changed by this batch: written in its transaction
        names = self._names
        sensors = [names.get(b) or self._name(b) for b in batch.sensors]
        out.readings = len(sensors)
        events = state.feed(sensors, batch.ts.tolist(), batch.values.tolist(), batch.quality,
                            self._update_us)
        out.events = [self.codec.encode("anomaly_event", e) for e in events]
        return out

    def _name(self, raw: bytes) -> str:
        """Sensor id from its UTF-8 bytes (interned: a few hundred distinct ids at most)."""
        name = raw.decode("utf-8", errors="replace")
        if len(self._names) < 100_000:
            self._names[raw] = name
        return name

    def _new(self, mid: MachineId) -> MachineState:
        specs = self.registry.sensors(mid) if self.registry is not None else {}
        sensors = sorted(specs)
        state = MachineState(mid, self.new_detector(sensors or None))
        state.detector.set_limits(warning_limits(specs))
        if sensors:
            state.rows.expected = frozenset(sensors)
        self.created += 1
        log.info("model created", extra={"machine": "/".join(mid), "sensors": sensors or "from data"})
        return state

    def _encode(self, _key: bytes, state: MachineState) -> bytes:
        return encode_snapshot(self.codec, state)

    def _decode(self, key: bytes, raw: bytes) -> MachineState | None:
        """A machine's state from its snapshot; None (a fresh model) for another model version
        or an unreadable snapshot."""
        try:
            state = restore(self.codec, raw, self.model, self.model_version)
        except DecodeError as exc:
            log.error("unreadable model snapshot ignored; starting a fresh model",
                      extra={"key": key.decode("utf-8", "replace"), "error": str(exc)})
            return None
        if state is not None:
            self.restored += 1
            log.info("model restored", extra={"machine": "/".join(state.mid), "rows": state.detector.n_rows})
        return state

    def memory_report(self) -> dict[str, Any]:
        """Per-machine model memory (snapshot bytes): machines, max, mean, total."""
        sizes = [st.memory_bytes() for p in self.store.partitions() for k in self.store.keys(p)
                 if (st := self.store.get(p, k)) is not None]
        return {"machines": len(sizes), "bytes_max": max(sizes, default=0),
                "bytes_mean": sum(sizes) / len(sizes) if sizes else 0.0, "bytes_total": sum(sizes)}

    def failed(self, value: bytes | None, partition: int, offset: int, exc: Exception) -> Outcome:
        """Outcome for a message whose scoring raised: a dead letter that says so."""
        detail = f"anomaly service failed on this batch: {exc!r}; report it, then replay the dead letter"
        src = Source(self.source_topic, partition, offset, value)
        return Outcome(dead_letter=self.dead.make(src, "processing_error", detail))
