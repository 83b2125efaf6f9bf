"""A simulated factory: tenants, sites and machines whose gateways send realistic batches.

Deterministic for a given seed, start time, interval and batch size: every machine has its
own random generator (spawned from the seed), so its readings do not depend on how many
other machines run. Time is virtual: tick ``k`` of a machine is at ``start_us + k *
interval``; the caller decides whether to emit as fast as possible or paced to the wall clock
(see :mod:`plantstream.gateway.sender`).

    factory = Factory.build(machines=6, seed=1, faults=["bearing_wear:machine=pump-01,start=60"])
    for batch in factory.batches(until=3600, batch_size=100): ...
    factory.assets(); factory.ground_truth()
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import numpy as np

from plantstream.gateway.errors import GatewayError
from plantstream.gateway.faults import FAULT_KINDS, PHYSICAL, ActiveFault, FaultSpec
from plantstream.gateway.machines import MACHINE_TYPES, UNIT_FROM_CANONICAL, MachineType, machine_type
from plantstream.gateway.physics import MachineModel, Modifiers
from plantstream.gateway.truth import FaultWindow

DEFAULT_TENANT, DEFAULT_SITE = "demo", "plant-1"
DEFAULT_MACHINES = 8
_NAMESPACE = uuid.UUID("5a1c3d7e-2b4f-4e8a-9c61-0d3b7f2a9e10")
_SEND_LATENCY_US = 50_000
_CHUNK_TICKS = 256


@dataclass
class _Chunk:
    """Precomputed reported signals of ticks k0.. of one machine (tick-major arrays)."""

    k0: int
    ts: np.ndarray        # (ticks,) gateway timestamps, us
    values: np.ndarray    # (ticks, sensors)
    present: np.ndarray   # (ticks, sensors) False where a reading is dropped


@dataclass
class SimMachine:
    """One machine and its gateway: identity, units it sends, physics, faults, counters."""

    tenant: str
    site: str
    id: str
    mtype: MachineType
    number: int                    # 1-based within its type and site
    rng: np.random.Generator
    imperial: bool                 # sends degF / psi instead of degC / bar
    explicit_units: bool           # puts the unit on every reading (else the registry says it)
    faults: list[ActiveFault] = field(default_factory=list)
    sequence: int = 0
    tick: int = 0
    chunk: _Chunk | None = None

    def __post_init__(self) -> None:
        self.model = MachineModel(self.mtype, self.rng)
        self.gateway = f"gw-{self.id}"
        self.tags = [f"{self.mtype.tag_prefix}{self.number:02d}.{s.code}" for s in self.mtype.sensors]
        units = [self.gateway_unit(i) or s.unit for i, s in enumerate(self.mtype.sensors)]
        self.units: list[str | None] = units if self.explicit_units else [None] * len(units)
        conv = [UNIT_FROM_CANONICAL.get((s.unit, u), (1.0, 0.0)) for s, u in zip(self.mtype.sensors, units,
                                                                               strict=True)]
        self.scale = np.array([c[0] for c in conv])[:, None]
        self.shift = np.array([c[1] for c in conv])[:, None]
        self.pow10 = np.array([10.0 ** s.decimals for s in self.mtype.sensors])[:, None]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.site, self.id)

    def gateway_unit(self, row: int) -> str | None:
        """The unit this gateway sends for a sensor, if not the canonical one."""
        return self.mtype.sensors[row].imperial_unit if self.imperial else None


class Factory:
    """The simulated machines of one or more sites, their faults and the virtual clock."""

    def __init__(self, machines: list[SimMachine], *, seed: int, start_us: int, interval: float,
                 horizon: float) -> None:
        if interval <= 0:
            raise GatewayError("the sampling interval must be positive")
        self.machines = machines
        self.seed = seed
        self.start_us = start_us
        self.interval_us = max(1, round(interval * 1_000_000))
        self.horizon = horizon

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def build(cls, machines: int = DEFAULT_MACHINES, seed: int = 0, *,
              machine_types: Sequence[str] | None = None, tenant: str = DEFAULT_TENANT,
              site: str = DEFAULT_SITE, sites: Sequence[tuple[str, str]] | None = None,
              faults: Sequence[FaultSpec | str] = (), faulty: int = 0, horizon: float = 3600.0,
              start_us: int | None = None, interval: float = 1.0, rate: float | None = None,
              warm_start: bool = False) -> Factory:
        """``machines`` machines cycling through ``machine_types`` (default: all four), spread
        round-robin over ``sites`` ([(tenant, site)], default one site). ``faults`` are
        specs; ``faulty`` more machines get a random fault within ``horizon`` seconds.
        Every sensor is sampled each ``interval`` seconds, or, with ``rate`` (readings/s), as
        often as makes the whole factory send ``rate`` readings per second of time.
        ``start_us`` defaults to ``now - horizon`` (a run as fast as possible ends at now) or,
        with ``rate``, to now (a run paced to the wall clock). ``warm_start`` starts every
        machine in steady operation (running, at temperature: a window cut from a working
        factory, what the demo and ``gateway simulate`` send); the default cold start switches
        the machines on at the start (speed and flow ramp up, motors warm up)."""
        if machines < 1:
            raise GatewayError("a factory needs at least one machine")
        types = [machine_type(n) for n in (machine_types or list(MACHINE_TYPES))]
        where = list(sites or [(tenant, site)])
        seeds = np.random.SeedSequence(seed).spawn(machines + 1)
        counters: dict[tuple[str, str, str], int] = {}
        built = []
        for i in range(machines):
            mtype = types[i % len(types)]
            t, s = where[i % len(where)]
            n = counters[(t, s, mtype.name)] = counters.get((t, s, mtype.name), 0) + 1
            # Every second machine of a type has an imperial gateway; pump and compressor
            # gateways label each reading with its unit, the others rely on the registry.
            explicit = list(MACHINE_TYPES).index(mtype.name) % 2 == 0
            rng = np.random.default_rng(seeds[i])
            built.append(SimMachine(t, s, f"{mtype.id_prefix}-{n:02d}", mtype, n, rng,
                                    imperial=n % 2 == 0, explicit_units=explicit))
            if warm_start:
                built[-1].model.warm_up()
        if rate is not None:
            if rate <= 0:
                raise GatewayError("the rate must be positive (readings per second)")
            interval = sum(len(m.mtype.sensors) for m in built) / rate
        if start_us is None:
            now = int(time.time())
            start_us = (now if rate is not None else now - math.ceil(horizon)) * 1_000_000
        factory = cls(built, seed=seed, start_us=start_us, interval=interval, horizon=horizon)
        chooser = np.random.default_rng(seeds[-1])
        for spec in faults:
            factory.inject(FaultSpec.parse(spec) if isinstance(spec, str) else spec, chooser)
        factory._random_faults(faulty, chooser)
        return factory

    def machine(self, name: str) -> SimMachine:
        """A machine by id (or ``tenant/site/machine`` when ids repeat across sites)."""
        hits = [m for m in self.machines if name in (m.id, "/".join(m.key))]
        if len(hits) != 1:
            known = ", ".join("/".join(m.key) for m in self.machines)
            what = "is ambiguous; use tenant/site/machine" if hits else "does not exist"
            raise GatewayError(f"machine {name!r} {what} (machines: {known})")
        return hits[0]

    def inject(self, spec: FaultSpec, chooser: np.random.Generator | None = None) -> ActiveFault:
        rng = chooser or np.random.default_rng(self.seed)
        if spec.machine is None:
            fits = [m for m in self.machines if spec.kind != "cavitation" or m.mtype.name == "pump"]
            if not fits:
                raise GatewayError(f"no machine can have fault {spec.kind}")
            target = fits[int(rng.integers(len(fits)))]
        else:
            target = self.machine(spec.machine)
        fault = ActiveFault.bind(spec, target.mtype, rng)
        target.faults.append(fault)
        return fault

    def _random_faults(self, count: int, rng: np.random.Generator) -> None:
        if count > len(self.machines):
            raise GatewayError(f"--faulty {count}: the factory has only {len(self.machines)} machines")
        for idx in rng.permutation(len(self.machines))[:count]:
            m = self.machines[int(idx)]
            kinds = [k for k in FAULT_KINDS if k != "cavitation" or m.mtype.name == "pump"]
            kind = kinds[int(rng.integers(len(kinds)))]
            start = float(rng.uniform(0.1, 0.5)) * self.horizon
            duration = float(rng.uniform(0.25, 0.45)) * self.horizon
            self.inject(FaultSpec(kind, "/".join(m.key), round(start, 1), round(duration, 1)), rng)

    # -- output -------------------------------------------------------------------------------
    @property
    def sensors(self) -> int:
        return sum(len(m.mtype.sensors) for m in self.machines)

    def readings_per_second(self) -> float:
        """Readings per second of virtual time (every sensor of every machine once a tick)."""
        return self.sensors * 1_000_000 / self.interval_us

    def batches(self, until: float | None = None, batch_size: int = 100) -> Iterator[dict[str, Any]]:
        """Gateway batches (``gateway_batch`` dicts) in time order across machines, up to
        ``until`` seconds after the start (default: the horizon). Each batch holds whole ticks
        (all sensors at one instant), at most ``batch_size`` readings (at least one tick).
        Calling again continues where the last call stopped."""
        for batch, _ in self.timed_batches(until, batch_size):
            yield batch

    def timed_batches(self, until: float | None = None,
                      batch_size: int = 100) -> Iterator[tuple[dict[str, Any], float]]:
        """Like :meth:`batches`, each with its due time: seconds after the start when its last
        tick has been sampled and the gateway sends it (what a real-time sender waits for)."""
        end_tick = math.ceil((self.horizon if until is None else until) * 1_000_000 / self.interval_us)

        def next_end(m: SimMachine) -> int:
            return min(end_tick, m.tick + max(1, batch_size // len(m.mtype.sensors)))

        # Ordered by when each batch is complete, as a fleet of gateways would send them.
        heap = [(next_end(m), i) for i, m in enumerate(self.machines) if m.tick < end_tick]
        heapq.heapify(heap)
        while heap:
            k1, i = heapq.heappop(heap)
            m = self.machines[i]
            k0, m.tick = m.tick, k1
            batch = self._batch(m, k0, k1)
            if m.tick < end_tick:
                heapq.heappush(heap, (next_end(m), i))
            if batch is not None:
                yield batch, ((m.tick - 1) * self.interval_us + _SEND_LATENCY_US) / 1_000_000

    def _chunk(self, m: SimMachine, k0: int, k1: int) -> _Chunk:
        """Signals of ticks [k0, k1) as the gateway reports them (units, resolution, faults).
        Computed for at least _CHUNK_TICKS ticks at once: numpy pays per call, not per value."""
        ticks = np.arange(k0, k1, dtype=np.int64) * self.interval_us
        t = ticks / 1_000_000
        mods = Modifiers()
        for f in m.faults:
            if f.kind in PHYSICAL:
                f.modify(t, mods, m.mtype)
        values = m.model.step(t, self.interval_us / 1_000_000, mods)
        present = np.ones(values.shape, dtype=bool)
        skew = np.zeros(t.shape, dtype=np.int64)
        for f in m.faults:
            if f.kind not in PHYSICAL:
                f.distort(t, values, present, skew, m.mtype, m.rng)
        if m.imperial:
            values = values * m.scale + m.shift
        values = np.round(values * m.pow10) / m.pow10
        # tick-major (one row per instant), the order readings go into a batch
        return _Chunk(k0, ticks + (self.start_us + skew), np.ascontiguousarray(values.T),
                      np.ascontiguousarray(present.T))

    def _batch(self, m: SimMachine, k0: int, k1: int) -> dict[str, Any] | None:
        c = m.chunk
        if c is None or k0 < c.k0 or k1 > c.k0 + c.ts.size:
            c = m.chunk = self._chunk(m, k0, max(k1, k0 + _CHUNK_TICKS))
        lo, hi = k0 - c.k0, k1 - c.k0
        n, width = hi - lo, c.values.shape[1]
        ts = c.ts[lo:hi]
        rows = zip(m.tags * n, np.repeat(ts, width).tolist(), c.values[lo:hi].ravel().tolist(), m.units * n,
                   strict=True)
        present = c.present[lo:hi]
        if not present.all():
            rows = compress(rows, present.ravel().tolist())  # type: ignore[assignment]
        readings = [{"tag": g, "ts": s, "value": v, "unit": u, "quality": 192} for g, s, v, u in rows]
        if not readings:
            return None  # the gateway was silent (dropout of every sensor)
        seq = m.sequence
        m.sequence += 1
        return {
            "batch_id": str(uuid.uuid5(_NAMESPACE, f"{self.seed}/{self.start_us}/{'/'.join(m.key)}/{seq}")),
            "tenant": m.tenant, "site": m.site, "machine": m.id, "gateway": m.gateway,
            "sent_at": int(ts[-1]) + _SEND_LATENCY_US, "sequence": seq, "readings": readings,
        }

    def ground_truth(self) -> list[FaultWindow]:
        """Every injected fault as a window in absolute microseconds, sorted by start."""
        t0 = self.start_us
        out = [FaultWindow(m.tenant, m.site, m.id, f.kind, f.sensors, t0 + round(f.start * 1_000_000),
                           t0 + round(f.end * 1_000_000), dict(f.params))
               for m in self.machines for f in m.faults]
        return sorted(out, key=lambda w: (w.start_us, w.machine))

    def assets(self, now_us: int | None = None) -> list[dict[str, Any]]:
        """The asset registry records (schema ``asset``) describing exactly what is sent."""
        from plantstream.assets import parse_assets
        from plantstream.gateway.registry import assets_document

        return parse_assets(assets_document(self), now_us)
