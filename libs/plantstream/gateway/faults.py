"""Injectable faults: what goes wrong, on which machine and sensors, from when and for how long.

Physical faults (bearing wear, overheating, cavitation) change the physics through
:class:`~plantstream.gateway.physics.Modifiers`, so every coupled signal reacts. Signal
faults (stuck sensor, dropout, spikes, clock skew) change what the gateway reports. Each
active fault is also a ground-truth window, so a detector's output can be scored.

A *change* is not a fault: ``recalibration`` (a sensor replaced or recalibrated reads
``offset``, a share of its value, default 0.08, higher from ``start`` on) moves the operating
point, which a detector should learn as the new normal. Changes are injected only on request,
never drawn among the random faults.

Spec syntax (CLI ``--fault``): ``KIND:key=value,...`` with keys ``machine`` (id, or
``tenant/site/machine``), ``start`` and ``duration`` (seconds from the start of the run),
``sensor`` (for stuck_sensor, dropout, spikes; ``*`` = every sensor), ``offset`` (clock_skew:
seconds, may be negative; recalibration: a share of the value), ``rate`` (spikes: share of
readings hit, default 0.02).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plantstream.gateway.errors import GatewayError
from plantstream.gateway.machines import MachineType
from plantstream.gateway.physics import Modifiers

PHYSICAL = ("bearing_wear", "overheating", "cavitation")
SIGNAL = ("stuck_sensor", "dropout", "spikes", "clock_skew")
FAULT_KINDS = PHYSICAL + SIGNAL  # the faults drawn at random
CHANGES = ("recalibration",)
_NEEDS = {"cavitation": ("discharge_pressure", "flow")}
_KEYS = {"machine", "start", "duration", "sensor", "offset", "rate"}


@dataclass(frozen=True)
class FaultSpec:
    """A fault as requested (times relative to the start of the simulation, in seconds)."""

    kind: str
    machine: str | None = None
    start: float = 60.0
    duration: float = 600.0
    sensor: str | None = None
    offset: float | None = None
    rate: float | None = None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        kind, _, rest = text.strip().partition(":")
        if kind not in FAULT_KINDS + CHANGES:
            raise GatewayError(f"fault {text!r}: unknown kind {kind!r} "
                               f"(known: {', '.join(FAULT_KINDS + CHANGES)})")
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq or key not in _KEYS:
                raise GatewayError(f"fault {text!r}: expected key=value with key in {sorted(_KEYS)}, "
                                   f"got {part!r}")
            if key in ("start", "duration", "offset", "rate"):
                try:
                    values[key] = float(value)
                except ValueError:
                    raise GatewayError(f"fault {text!r}: {key}={value!r} is not a number") from None
            else:
                values[key] = value
        spec = cls(kind, **values)
        if spec.duration <= 0 or spec.start < 0:
            raise GatewayError(f"fault {text!r}: start must be >= 0 and duration > 0 (seconds)")
        if spec.rate is not None and not 0 < spec.rate <= 1:
            raise GatewayError(f"fault {text!r}: rate is a share of readings, in (0, 1]")
        return spec


@dataclass
class ActiveFault:
    """A fault bound to one machine, with its resolved sensors and parameters."""

    kind: str
    start: float
    end: float
    sensors: tuple[str, ...]
    rows: np.ndarray                     # row indices of ``sensors`` in the machine's sensor order
    params: dict[str, float] = field(default_factory=dict)
    frozen: np.ndarray | None = None     # stuck_sensor: the values it stuck at

    @classmethod
    def bind(cls, spec: FaultSpec, mtype: MachineType, rng: np.random.Generator) -> ActiveFault:
        ids = mtype.sensor_ids
        for needed in _NEEDS.get(spec.kind, ()):
            if needed not in ids:
                raise GatewayError(f"fault {spec.kind} needs a {needed} sensor; a {mtype.name} has none")
        if spec.kind == "bearing_wear":
            sensors: tuple[str, ...] = ("vibration", "bearing_temp")
        elif spec.kind == "overheating":
            sensors = ("motor_temp",)
        elif spec.kind == "cavitation":
            sensors = ("discharge_pressure", "flow", "vibration")
        elif spec.kind == "clock_skew" or spec.sensor == "*":
            sensors = ids
        elif spec.sensor is None:
            sensors = (ids[int(rng.integers(len(ids)))],)
        elif spec.sensor in ids:
            sensors = (spec.sensor,)
        else:
            raise GatewayError(f"fault {spec.kind}: a {mtype.name} has no sensor {spec.sensor!r} "
                               f"(it has {', '.join(ids)})")
        params: dict[str, float] = {}
        if spec.kind == "clock_skew":
            # default: 15 min either way, three times the default clock-skew alert limit
            default = float(rng.choice([-1, 1]) * 900)
            params["offset"] = spec.offset if spec.offset is not None else default
        if spec.kind == "spikes":
            params["rate"] = spec.rate if spec.rate is not None else 0.02
        if spec.kind == "recalibration":
            params["offset"] = spec.offset if spec.offset is not None else 0.08
        rows = np.array([ids.index(s) for s in sensors])
        return cls(spec.kind, spec.start, spec.start + spec.duration, sensors, rows, params)

    def window(self, t: np.ndarray) -> np.ndarray:
        return (t >= self.start) & (t < self.end)

    def modify(self, t: np.ndarray, mods: Modifiers, mtype: MachineType) -> None:
        """Physical faults: add their effect to the batch's modifiers."""
        on = self.window(t)
        if not on.any():
            return
        progress = np.clip((t - self.start) / (self.end - self.start), 0.0, 1.0) * on
        if self.kind == "bearing_wear":
            wear = progress ** 2.5  # slow at first, accelerating toward failure
            vib = mtype.sensor("vibration")
            brg = mtype.sensor("bearing_temp")
            healthy_brg = mtype.ambient + mtype.bearing_rise
            mods.vib_add = mods.vib_add + wear * 1.3 * vib.critical_high
            mods.vib_noise = mods.vib_noise + 0.15 * wear
            mods.bearing_heat = mods.bearing_heat + wear * (brg.critical_high - healthy_brg + 30.0)
        elif self.kind == "overheating":
            mot = mtype.sensor("motor_temp")
            rise = np.clip(progress / 0.3, 0.0, 1.0) * on  # cooling fails over the first 30 %
            mods.motor_heat = mods.motor_heat + rise * (mot.critical_high - mtype.ambient)
        elif self.kind == "cavitation":
            onset = np.clip((t - self.start) / 30.0, 0.0, 1.0) * on
            mods.pressure_factor = mods.pressure_factor * (1.0 - 0.5 * onset)
            mods.flow_factor = mods.flow_factor * (1.0 - 0.5 * onset)
            mods.vib_add = mods.vib_add + onset * 0.6 * mtype.sensor("vibration").warning_high
            mods.vib_noise = mods.vib_noise + 0.35 * onset
            mods.process_noise = mods.process_noise + 0.06 * onset

    def distort(self, t: np.ndarray, values: np.ndarray, present: np.ndarray,
                skew_us: np.ndarray, mtype: MachineType, rng: np.random.Generator) -> None:
        """Signal faults: change what the gateway reports (values, presence, clock), in place."""
        on = self.window(t)
        if not on.any():
            return
        rows = self.rows
        if self.kind == "stuck_sensor":
            if self.frozen is None:
                self.frozen = values[rows, int(np.argmax(on))].copy()
            values[np.ix_(rows, on)] = self.frozen[:, None]
        elif self.kind == "dropout":
            present[np.ix_(rows, on)] = False
        elif self.kind == "spikes":
            hit = (rng.random((rows.size, t.size)) < self.params["rate"]) & on
            lo = np.array([mtype.sensors[r].valid[0] for r in rows])
            hi = np.array([mtype.sensors[r].valid[1] for r in rows])
            size = rng.uniform(0.1, 0.6, hit.shape) * (hi - lo)[:, None]
            sign = np.where(rng.random(hit.shape) < 0.8, 1.0, -1.0)
            block = values[rows]
            values[rows] = np.where(hit, block + sign * size, block)
        elif self.kind == "recalibration":
            values[np.ix_(rows, on)] *= 1.0 + self.params["offset"]
        elif self.kind == "clock_skew":
            skew_us += (on * int(self.params["offset"] * 1_000_000)).astype(np.int64)
