"""The physical model of one simulated machine, vectorised over the ticks of one batch.

Each machine type drives a load and a speed set point over time (pump demand curve, CNC job
cycles, compressor load/unload, conveyor breaks). From them, the shared model derives the
coupled signals: current grows with load and speed, motor temperature follows the square of
the current through a first-order thermal lag (so a cold start shows a warm-up; a warm start,
:meth:`MachineModel.warm_up`, begins in steady operation instead), bearing
temperature follows speed, vibration grows with the square of speed and with load. Faults
enter as :class:`Modifiers` (extra heat, extra vibration, pressure and flow loss) before the
lags, so their effects are physically delayed too. Measurement noise is added last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from plantstream.gateway.machines import MachineType

TAU = 2 * math.pi
_SPEED_TAU = 3.0  # s: motors ramp up and down, they do not jump


def lag(x: np.ndarray, y0: float, a: float) -> np.ndarray:
    """First-order lag ``y[n] = a*y[n-1] + (1-a)*x[n]`` from ``y[-1] = y0``, without a Python loop.

    Uses ``y[n] = a^(n+1) * (y0 + (1-a) * sum_k x[k] a^-(k+1))`` on segments short enough that
    ``a^-n`` stays far from overflow.
    """
    n = x.shape[0]
    if a <= 1e-12 or n == 0:
        return x.astype(float, copy=True)
    if a >= 1.0:
        return np.full(n, y0, dtype=float)
    seg = max(1, int(300.0 / -math.log(a)))
    out = np.empty(n, dtype=float)
    for lo in range(0, n, seg):
        hi = min(n, lo + seg)
        k = np.arange(1, hi - lo + 1, dtype=float)
        grow = a ** -k
        out[lo:hi] = (y0 + (1.0 - a) * np.cumsum(x[lo:hi] * grow)) / grow
        y0 = float(out[hi - 1])
    return out


@dataclass
class Modifiers:
    """What active faults do to the physics over one batch (scalars or per-tick arrays)."""

    motor_heat: Any = 0.0      # K added to the motor's steady-state temperature
    bearing_heat: Any = 0.0    # K added to the bearing's steady-state temperature
    vib_add: Any = 0.0         # mm/s added to vibration
    vib_noise: Any = 0.0       # extra relative vibration noise (broadband, e.g. cavitation)
    pressure_factor: Any = 1.0
    flow_factor: Any = 1.0
    process_noise: Any = 0.0   # relative fluctuation of pressure, flow and current


class MachineModel:
    """State and physics of one machine; ``step`` returns true values (sensor x tick)."""

    def __init__(self, mtype: MachineType, rng: np.random.Generator) -> None:
        self.t = mtype
        self.rng = rng
        amb = mtype.ambient
        self.state = {"speed": 0.0, "motor": amb, "bearing": amb, "coolant": mtype.params.get("coolant", amb),
                      "discharge": amb}
        self.phase = rng.uniform(0, TAU, size=4)
        self.period = rng.uniform(0.8, 1.25, size=2) * np.array([1800.0, 420.0])
        self.demand = float(rng.uniform(0.4, 0.7))      # compressor: loaded share of the cycle
        self.cycle = float(rng.uniform(120.0, 240.0))   # compressor: load/unload period, s
        self.offset = float(rng.uniform(0.0, 1.0))      # conveyor: when the breaks fall
        self._jobs_end = np.zeros(0)
        self._jobs_speed = np.zeros(0)
        self._jobs_load = np.zeros(0)
        self.index = {sid: i for i, sid in enumerate(mtype.sensor_ids)}
        self.noise = np.array([s.noise for s in mtype.sensors])
        self.lo = np.array([s.valid[0] for s in mtype.sensors])[:, None]
        self.hi = np.array([s.valid[1] for s in mtype.sensors])[:, None]

    def warm_up(self, seconds: float | None = None, dt: float = 10.0) -> None:
        """Run the machine for ``seconds`` before time 0 (default: six of its slowest thermal time
        constants) and keep only the resulting state, so time 0 finds it at speed and at
        operating temperature, as a factory's machines are when a recording window opens."""
        p = self.t.params
        taus = [self.t.motor_tau, self.t.bearing_tau, p.get("coolant_tau", 0.0), p.get("discharge_tau", 0.0)]
        span = 6.0 * max(taus) if seconds is None else seconds
        if span > 0:
            self.step(np.arange(-span, 0.0, dt), dt, Modifiers())

    # -- load and speed set point per machine type ------------------------------------------
    def _waves(self, t: np.ndarray, base: float, a1: float, a2: float) -> np.ndarray:
        return (base + a1 * np.sin(TAU * t / self.period[0] + self.phase[0])
                + a2 * np.sin(TAU * t / self.period[1] + self.phase[1]))

    def _cnc_jobs(self, t_start: float, t_end: float) -> None:
        """Extend the job schedule: cutting jobs at varying speeds, separated by tool changes."""
        ends, speeds, loads = [], [], []
        last = float(self._jobs_end[-1]) if self._jobs_end.size else min(0.0, t_start)
        while last <= t_end:
            last += float(self.rng.uniform(60.0, 300.0))
            ends.append(last)
            speeds.append(float(self.rng.uniform(0.45, 0.95)) * self.t.nominal_speed)
            loads.append(float(self.rng.uniform(0.35, 0.85)))
            last += float(self.rng.uniform(10.0, 60.0))
            ends.append(last)
            speeds.append(0.0)
            loads.append(0.0)
        keep = self._jobs_end > t_start  # forget jobs already finished
        self._jobs_end = np.concatenate([self._jobs_end[keep], ends])
        self._jobs_speed = np.concatenate([self._jobs_speed[keep], speeds])
        self._jobs_load = np.concatenate([self._jobs_load[keep], loads])

    def drivers(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(load in 0..1, speed set point in rpm) at times ``t`` (s since start)."""
        kind, nominal = self.t.name, self.t.nominal_speed
        if kind == "pump":
            load = self._waves(t, 0.75, 0.12, 0.06)
            return load, nominal * (0.82 + 0.18 * load)
        if kind == "cnc_spindle":
            if not self._jobs_end.size or self._jobs_end[-1] <= t[-1]:
                self._cnc_jobs(float(t[0]), float(t[-1]))
            i = np.searchsorted(self._jobs_end, t, side="right")
            return self._jobs_load[i], self._jobs_speed[i]
        if kind == "compressor":
            loaded = (t / self.cycle + self.offset) % 1.0 < self.demand
            return np.where(loaded, 1.0, 0.3), np.full(t.shape, nominal)
        every, pause = self.t.params["break_every"], self.t.params["break_for"]
        running = (t + self.offset * every) % every < every - pause
        load = self._waves(t, 0.6, 0.15, 0.08)
        return load * running, np.where(running, nominal * (1.0 - 0.03 * load), 0.0)

    # -- the coupled signals --------------------------------------------------------------
    def step(self, t: np.ndarray, dt: float, mods: Modifiers) -> np.ndarray:
        mt, st, rng = self.t, self.state, self.rng
        load, speed_set = self.drivers(t)
        speed = lag(speed_set, st["speed"], math.exp(-dt / _SPEED_TAU))
        spin = np.clip(speed / mt.nominal_speed, 0.0, 1.3)
        wobble = 1.0
        if np.any(mods.process_noise):
            wobble = 1.0 + mods.process_noise * rng.standard_normal(t.shape)
        current = (mt.no_load_current * spin + (mt.rated_current - mt.no_load_current) * load * spin) * wobble
        motor = lag(mt.ambient + mt.motor_rise * (current / mt.rated_current) ** 2 + mods.motor_heat,
                    st["motor"], math.exp(-dt / mt.motor_tau))
        bearing = lag(mt.ambient + mt.bearing_rise * spin ** 1.5 + 3.0 * load + mods.bearing_heat,
                      st["bearing"], math.exp(-dt / mt.bearing_tau))
        vib_sigma = 0.06 + mods.vib_noise
        vibration = ((mt.vib_base * np.minimum(spin * 5.0, 1.0) + mt.vib_speed * spin ** 2
                      + mt.vib_load * load + mods.vib_add)
                     * np.exp(vib_sigma * rng.standard_normal(t.shape)) + 0.02)
        st.update(speed=float(speed[-1]), motor=float(motor[-1]), bearing=float(bearing[-1]))
        signals = {"vibration": vibration, "bearing_temp": bearing, "motor_temp": motor,
                   "current": current, "speed": speed}
        p = mt.params
        if mt.name == "pump":
            head = p["pressure"] * spin ** 2 * (1.1 - 0.15 * load)
            signals["discharge_pressure"] = head * mods.pressure_factor * wobble
            signals["flow"] = p["flow"] * spin * (0.6 + 0.5 * load) * mods.flow_factor * wobble
        elif mt.name == "cnc_spindle":
            coolant = lag(p["coolant"] + p["coolant_rise"] * load, st["coolant"],
                          math.exp(-dt / p["coolant_tau"]))
            st["coolant"] = float(coolant[-1])
            signals["coolant_temp"] = coolant
        elif mt.name == "compressor":
            phase = (t / self.cycle + self.offset) % 1.0
            span = p["cut_out"] - p["cut_in"]
            rising = p["cut_in"] + span * phase / self.demand
            falling = p["cut_out"] - span * (phase - self.demand) / (1.0 - self.demand)
            signals["pressure"] = np.where(phase < self.demand, rising, falling) * mods.pressure_factor
            discharge = lag(mt.ambient + p["discharge_rise"] * (0.4 + 0.6 * load) * spin,
                            st["discharge"], math.exp(-dt / p["discharge_tau"]))
            st["discharge"] = float(discharge[-1])
            signals["discharge_temp"] = discharge
        values = np.empty((len(self.index), t.shape[0]))
        for sid, i in self.index.items():
            values[i] = signals[sid]
        values += self.noise[:, None] * rng.standard_normal(values.shape)
        return np.clip(values, self.lo, self.hi, out=values)  # a sensor reads within its range
