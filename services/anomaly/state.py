"""Everything the service keeps for one machine, and how it is snapshotted.

Why one object: the detector, the half-assembled row and the open episode must be restored
together, or a restart would re-learn rows, lose a row or re-open an episode under a new id.
The snapshot is an Avro ``model_snapshot`` record whose ``state`` is this object written with
the safe state codec (``anomaly.snapshot``: a JSON tree that can only rebuild listed classes),
tagged with the model name and version so a service with a different detector configuration
starts a fresh model rather than loading a foreign one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anomaly.events import Episode, MachineId, anomaly_event, rebaseline_event
from anomaly.machine import MachineDetector
from anomaly.rows import RowAssembler
from anomaly.snapshot import state_codec
from plantstream.avro import AvroCodec
from plantstream.statecodec import FORMAT as SNAPSHOT_FORMAT
from plantstream.statecodec import StateCodecError


@dataclass
class MachineState:
    """A machine's detector, row assembler and episode; fed reading lists, returns events."""

    mid: MachineId
    detector: MachineDetector
    rows: RowAssembler = field(default_factory=RowAssembler)
    episode: Episode = field(default_factory=Episode)
    sensor_episodes: dict[tuple[str, str], Episode] = field(default_factory=dict)  # (check, sensor)

    def feed(self, sensors: Sequence[str], ts: Sequence[int], values: Sequence[float],
             quality: Sequence[int], update_us: int) -> list[dict[str, Any]]:
        """Score the complete rows among the readings (columns); return anomaly_event records."""
        events: list[dict[str, Any]] = []
        rows = self.rows.add(sensors, ts, values, quality)
        if not rows:
            return events
        step = self.detector.process_one
        episode = self.episode
        for ts, x in rows:
            v = step(ts, x)
            for a in v.sensor_alarms:
                ep = self.sensor_episodes.get((a.check, a.sensor))
                if ep is None:
                    ep = self.sensor_episodes[(a.check, a.sensor)] = Episode()
                window = ep.step(a, update_us)
                if window is not None:
                    events.append(anomaly_event(self.mid, a, window[0], window[1], x, "univariate", a.sensor))
            if v.warming_up or not (v.is_anomaly or v.state_changed):
                continue
            window = episode.step(v, update_us)
            if window is not None:
                events.append(anomaly_event(self.mid, v, window[0], window[1], x))
            if v.rebaseline:
                events.append(rebaseline_event(self.mid, v))
        return events

    def to_record(self) -> dict[str, Any]:
        """The ``model_snapshot`` record of this state."""
        return {
            "tenant": self.mid[0], "site": self.mid[1], "machine": self.mid[2],
            "model": self.detector.model_name, "model_version": self.detector.model_version,
            "format": SNAPSHOT_FORMAT, "rows": self.detector.n_rows,
            "last_ts": max(self.rows.last_ts, 0), "taken_at": int(time.time() * 1e6),
            "state": state_codec().encode(self),
        }

    def memory_bytes(self) -> int:
        """Snapshot size: the per-machine memory figure reported in logs and metrics."""
        return len(state_codec().encode(self))


def encode_snapshot(codec: AvroCodec, state: MachineState) -> bytes:
    return codec.encode("model_snapshot", state.to_record())


def restore(
    codec: AvroCodec, data: bytes, expect_model: str, expect_version: str
) -> MachineState | None:
    """Machine state from a snapshot, or None when it belongs to another model, version or
    format (the caller then starts a fresh detector). Avro decode errors propagate
    (DecodeError); a state the codec refuses is treated as absent."""
    rec = codec.decode(data, "model_snapshot")
    if rec["model"] != expect_model or rec["model_version"] != expect_version:
        return None
    if rec["format"] != SNAPSHOT_FORMAT:
        return None
    try:
        state = state_codec().decode(rec["state"])
    except StateCodecError:
        return None
    if not isinstance(state, MachineState):
        return None
    return state

