"""Synthetic machine readings as ``reading_batch`` records, for the service's tests and benchmark.

Why: the service must be exercised end to end with known ground truth (which machine, which
sensor, from when) and with healthy machines that are not flat lines: every sensor follows
a shared load cycle plus its own noise, the way pumps and presses do, so a detector that
only learned one phase of the cycle would false-alarm. A fault is a ramp on one sensor.
The factory simulator (``plantstream.gateway.simulator``) replaces this when it can emit
reading batches directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

T0_US = 1_750_000_000_000_000


@dataclass(frozen=True)
class Fault:
    """From sample ``start`` on, ``sensor`` ramps over ``ramp`` samples to ``size`` x its level."""

    sensor: str
    start: int
    size: float = 0.08
    ramp: int = 10


@dataclass
class SyntheticMachine:
    tenant: str
    site: str
    machine: str
    sensors: list[str]
    seed: int = 0
    noise: float = 0.004  # relative standard deviation of each sensor
    load_amplitude: float = 0.05  # relative swing of the shared load cycle
    load_period: int = 300  # samples per load cycle
    fault: Fault | None = None
    _rng: random.Random = field(init=False, repr=False)
    _base: list[float] = field(init=False, repr=False)
    _gain: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._base = [10.0 + 5.0 * self._rng.random() + 3.0 * i for i in range(len(self.sensors))]
        self._gain = [0.5 + self._rng.random() for _ in self.sensors]

    @property
    def key(self) -> bytes:
        return f"{self.tenant}/{self.site}/{self.machine}".encode()

    def value(self, j: int, i: int) -> float:
        load = math.sin(2.0 * math.pi * i / self.load_period)
        level = self._base[j] * (1.0 + self.load_amplitude * self._gain[j] * load)
        v = level * (1.0 + self.noise * self._rng.gauss(0.0, 1.0))
        f = self.fault
        if f is not None and self.sensors[j] == f.sensor and i >= f.start:
            v += self._base[j] * f.size * min(1.0, (i - f.start + 1) / f.ramp)
        return v

    def is_faulty(self, i: int) -> bool:
        return self.fault is not None and i >= self.fault.start


def batch_record(m: SyntheticMachine, first: int, samples: int, step_us: int, seq: int) -> dict[str, Any]:
    """One reading_batch: ``samples`` consecutive sample times of every sensor of ``m``."""
    readings = []
    for i in range(first, first + samples):
        ts = T0_US + i * step_us
        for j, s in enumerate(m.sensors):
            readings.append({"reading_id": f"{m.machine}-{seq}-{len(readings)}", "sensor": s, "ts": ts,
                             "value": m.value(j, i), "unit": "u", "quality": 192})
    return {"batch_id": f"{m.machine}-{seq}", "tenant": m.tenant, "site": m.site, "machine": m.machine,
            "gateway": "synthetic", "ingest_time": T0_US + first * step_us, "readings": readings}


def stream(
    machines: list[SyntheticMachine], samples: int, per_batch: int = 10, step_us: int = 1_000_000,
    start: int = 0,
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(key, reading_batch record)`` for samples ``start .. start+samples``, machines interleaved."""
    seq = start // per_batch
    for first in range(start, start + samples, per_batch):
        n = min(per_batch, start + samples - first)
        for m in machines:
            yield m.key, batch_record(m, first, n, step_us, seq)
        seq += 1


def asset_record(m: SyntheticMachine) -> dict[str, Any]:
    """The asset registry record of ``m`` (schema ``asset``)."""
    sensors = [{"sensor": s, "tag": s, "unit": "u", "gateway_unit": None, "min_valid": None,
                "max_valid": None, "warning_high": None, "critical_high": None, "warning_low": None,
                "critical_low": None, "recommended_action": None} for s in m.sensors]
    return {"tenant": m.tenant, "site": m.site, "machine": m.machine, "machine_type": "synthetic",
            "description": None, "sensors": sensors, "updated_at": T0_US}
