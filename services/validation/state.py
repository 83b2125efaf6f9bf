"""Last accepted timestamp per sensor, per machine, per input partition, kept consistent with
what Kafka committed.

Changes made while processing a batch are *pending*; the transaction that carries the
batch's output also carries one ``validation.state`` record per changed machine (compacted,
pinned to the input partition), and only its commit makes the change current. The next owner
of a partition reads that changelog partition from the beginning to rebuild the state.
"""

from __future__ import annotations

import logging

from plantstream.avro import AvroCodec
from plantstream.changelog import read_changelog
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import VALIDATION_STATE, machine_key

log = logging.getLogger(__name__)

MachineId = tuple[str, str, str]


class SensorClock:
    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.codec = codec or AvroCodec()
        self.topic = VALIDATION_STATE.physical(settings)
        self.state: dict[int, dict[MachineId, dict[bytes, int]]] = {}
        self.pending: dict[tuple[int, MachineId], dict[bytes, int]] = {}

    def working(self, partition: int, mid: MachineId) -> dict[bytes, int]:
        """The machine's last_ts to check against and update while processing (pending copy)."""
        key = (partition, mid)
        cur = self.pending.get(key)
        if cur is None:
            cur = dict(self.state.get(partition, {}).get(mid, {}))
            self.pending[key] = cur
        return cur

    def changelog(self, now_us: int) -> list[Output]:
        outs = []
        for (partition, (t, s, m)), last in self.pending.items():
            record = {"tenant": t, "site": s, "machine": m, "input_partition": partition,
                      "last_ts": {k.decode(): v for k, v in last.items()}, "updated_at": now_us}
            outs.append(Output(self.topic, machine_key(t, s, m),
                               self.codec.encode("validation_sensor_state", record), partition=partition))
        return outs

    def committed(self) -> None:
        for (partition, mid), last in self.pending.items():
            self.state.setdefault(partition, {})[mid] = last
        self.pending.clear()

    def aborted(self) -> None:
        self.pending.clear()

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.state.pop(p, None)
        self.pending = {k: v for k, v in self.pending.items() if k[0] not in partitions}

    def rebuild(self, partitions: list[int]) -> int:
        for p in partitions:
            self.state[p] = {}
        machines = 0
        for msg in read_changelog(self.settings, self.topic, partitions):
            if msg.value() is None:
                continue
            rec = self.codec.decode(msg.value(), "validation_sensor_state")
            mid = (rec["tenant"], rec["site"], rec["machine"])
            self.state.setdefault(msg.partition(), {})[mid] = {
                k.encode(): v for k, v in rec["last_ts"].items()}
            machines += 1
        log.info("order state rebuilt", extra={"partitions": partitions, "records": machines})
        return machines
