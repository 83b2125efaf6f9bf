"""The machine types the simulator knows: their sensors (ids, tag codes, units, plausible
ranges, alert limits, recommended actions) and the physical constants their model uses.

The same definitions produce both the readings and the asset registry, so the registry's
tags, units and limits always match what the simulated gateways send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plantstream.gateway.errors import GatewayError


@dataclass(frozen=True)
class SensorDef:
    """One sensor of a machine type; limits are in the canonical ``unit``."""

    id: str
    code: str                      # tag suffix, e.g. "VIB" -> "P01.VIB"
    unit: str                      # canonical unit stored by the platform
    valid: tuple[float, float]     # physically plausible range
    noise: float                   # measurement noise (standard deviation, canonical unit)
    decimals: int                  # resolution the gateway reports
    imperial_unit: str | None = None  # what an imperial gateway sends instead (degF, psi)
    warning_high: float | None = None
    critical_high: float | None = None
    warning_low: float | None = None
    critical_low: float | None = None
    action: str | None = None


@dataclass(frozen=True)
class MachineType:
    """A kind of machine: sensors plus the constants of its physical model."""

    name: str
    id_prefix: str                 # machine ids: "<id_prefix>-01"
    tag_prefix: str                # gateway tags: "<tag_prefix>01.<code>"
    sensors: tuple[SensorDef, ...]
    nominal_speed: float           # rpm at full speed
    rated_current: float           # A at full load
    no_load_current: float         # A when spinning unloaded
    ambient: float                 # degC around the machine
    motor_rise: float              # motor temperature rise at rated current, K
    motor_tau: float               # motor thermal time constant, s
    bearing_rise: float            # bearing temperature rise at nominal speed, K
    bearing_tau: float             # bearing thermal time constant, s
    vib_base: float                # mm/s when spinning slowly
    vib_speed: float               # extra mm/s at nominal speed (grows with speed squared)
    vib_load: float                # extra mm/s at full load
    params: dict[str, float] = field(default_factory=dict)

    def sensor(self, sensor_id: str) -> SensorDef:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise KeyError(sensor_id)

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.sensors)


_TEMP_VALID = (-40.0, 250.0)


def _vibration(warn: float, crit: float) -> SensorDef:
    return SensorDef("vibration", "VIB", "mm/s", (0.0, 100.0), 0.04, 3, warning_high=warn, critical_high=crit,
                     action="Check alignment, coupling and bearings; plan a bearing inspection.")


def _bearing(warn: float, crit: float) -> SensorDef:
    return SensorDef("bearing_temp", "TT_BRG", "degC", _TEMP_VALID, 0.15, 1, "degF", warn, crit,
                     action="Check bearing lubrication; replace the bearing if vibration rises too.")


def _motor(warn: float, crit: float) -> SensorDef:
    return SensorDef("motor_temp", "TT_MOT", "degC", _TEMP_VALID, 0.2, 1, "degF", warn, crit,
                     action="Check the motor fan and cooling air; reduce load until it cools.")


def _current(rated: float) -> SensorDef:
    return SensorDef("current", "CUR", "A", (0.0, rated * 4), rated * 0.006, 2,
                     warning_high=round(rated * 1.1, 1), critical_high=round(rated * 1.25, 1),
                     action="Check for mechanical overload or a failing winding.")


def _speed(nominal: float) -> SensorDef:
    return SensorDef("speed", "SPD", "rpm", (0.0, nominal * 1.5), nominal * 0.0008, 0)


PUMP = MachineType(
    "pump", "pump", "P",
    (_vibration(4.5, 7.1), _bearing(80, 95), _motor(110, 130), _current(55.0),
     SensorDef("discharge_pressure", "PT_DIS", "bar", (0.0, 25.0), 0.02, 3, "psi", 9.0, 10.0, 3.0, 2.0,
               action="Check the suction side for blockage or air; inspect the impeller for cavitation."),
     SensorDef("flow", "FT", "m3/h", (0.0, 400.0), 0.6, 1, warning_low=60.0, critical_low=40.0,
               action="Check valves and the suction strainer."),
     _speed(2950)),
    nominal_speed=2950, rated_current=55.0, no_load_current=14.0, ambient=24.0,
    motor_rise=55.0, motor_tau=900.0, bearing_rise=34.0, bearing_tau=600.0,
    vib_base=0.6, vib_speed=1.2, vib_load=0.35,
    params={"pressure": 6.2, "flow": 120.0},
)

CNC_SPINDLE = MachineType(
    "cnc_spindle", "cnc", "C",
    (_vibration(2.8, 4.5), _bearing(55, 65), _motor(90, 110), _current(40.0), _speed(18000),
     SensorDef("coolant_temp", "TT_COOL", "degC", (-10.0, 90.0), 0.1, 1, "degF", 30.0, 35.0,
               action="Check the coolant chiller and the coolant level.")),
    nominal_speed=18000, rated_current=40.0, no_load_current=6.0, ambient=22.0,
    motor_rise=45.0, motor_tau=400.0, bearing_rise=18.0, bearing_tau=300.0,
    vib_base=0.3, vib_speed=0.8, vib_load=0.3,
    params={"coolant": 21.0, "coolant_rise": 4.0, "coolant_tau": 240.0},
)

COMPRESSOR = MachineType(
    "compressor", "compressor", "K",
    (_vibration(4.5, 7.1), _bearing(85, 100), _motor(110, 130), _current(130.0),
     SensorDef("pressure", "PT", "bar", (0.0, 16.0), 0.015, 3, "psi", 9.5, 10.5, 6.0, 5.0,
               action="Check the pressure switch, the inlet valve and for leaks in the network."),
     SensorDef("discharge_temp", "TT_DIS", "degC", _TEMP_VALID, 0.2, 1, "degF", 100.0, 110.0,
               action="Check the oil level and the oil cooler."),
     _speed(2970)),
    nominal_speed=2970, rated_current=130.0, no_load_current=45.0, ambient=26.0,
    motor_rise=58.0, motor_tau=1200.0, bearing_rise=38.0, bearing_tau=700.0,
    vib_base=0.7, vib_speed=1.1, vib_load=0.4,
    params={"cut_in": 7.0, "cut_out": 8.5, "discharge_rise": 58.0, "discharge_tau": 300.0},
)

CONVEYOR_MOTOR = MachineType(
    "conveyor_motor", "conveyor", "M",
    (_vibration(4.5, 7.1), _bearing(75, 90), _motor(100, 120), _current(15.0), _speed(1500)),
    nominal_speed=1500, rated_current=15.0, no_load_current=5.0, ambient=20.0,
    motor_rise=48.0, motor_tau=900.0, bearing_rise=28.0, bearing_tau=600.0,
    vib_base=0.5, vib_speed=0.9, vib_load=0.3,
    params={"break_every": 3600.0, "break_for": 300.0},
)

MACHINE_TYPES: dict[str, MachineType] = {t.name: t for t in (PUMP, CNC_SPINDLE, COMPRESSOR, CONVEYOR_MOTOR)}

# Imperial gateways send these units instead of the canonical ones; to_gateway converts.
UNIT_FROM_CANONICAL = {
    ("degC", "degF"): (1.8, 32.0),
    ("bar", "psi"): (14.503773773, 0.0),
}


def machine_type(name: str) -> MachineType:
    try:
        return MACHINE_TYPES[name]
    except KeyError:
        raise GatewayError(f"unknown machine type {name!r} (known: {', '.join(MACHINE_TYPES)})") from None
