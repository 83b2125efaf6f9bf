"""Last accepted timestamp per sensor, per machine, kept in validation's
:class:`~plantstream.store.PartitionStore` (key tenant/site/machine, value an Avro
``validation_sensor_state``), so order checks commit, roll back and are rebuilt with the
batches that moved them."""

from __future__ import annotations

import time

from plantstream.avro import AvroCodec
from plantstream.settings import Settings
from plantstream.store import PartitionStore
from plantstream.topics import VALIDATION_STATE, machine_key

MachineId = tuple[str, str, str]
Clock = tuple[MachineId, int, dict[bytes, int]]  # machine, input partition, sensor -> last ts


class SensorClock:
    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self.codec = codec or AvroCodec()
        self.store: PartitionStore[Clock] = PartitionStore(
            settings, VALIDATION_STATE, self._encode, self._decode, name="validation.state")

    def working(self, partition: int, mid: MachineId) -> dict[bytes, int]:
        """The machine's last_ts to check against and update while processing the batch."""
        key = machine_key(*mid)
        clock = self.store.get(partition, key)
        if clock is None:
            clock = (mid, partition, {})
        self.store.put(partition, key, clock)  # changed in place by the checks
        return clock[2]

    def _encode(self, _key: bytes, clock: Clock) -> bytes:
        (t, s, m), partition, last = clock
        return self.codec.encode("validation_sensor_state", {
            "tenant": t, "site": s, "machine": m, "input_partition": partition,
            "last_ts": {k.decode("utf-8", errors="replace"): v for k, v in last.items()},
            "updated_at": time.time_ns() // 1000})

    def _decode(self, _key: bytes, raw: bytes) -> Clock:
        rec = self.codec.decode(raw, "validation_sensor_state")
        return ((rec["tenant"], rec["site"], rec["machine"]), rec["input_partition"],
                {k.encode(): v for k, v in rec["last_ts"].items()})
