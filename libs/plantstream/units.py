"""Unit conversion to a sensor's canonical unit.

Every supported conversion is affine (``canonical = value * scale + offset``), so a sensor's
conversion is looked up once and applied to a whole batch with one multiply-add per reading.
Units are grouped by quantity; converting across quantities (``psi`` to ``degC``) or from a
unit this table does not know raises :class:`UnitError`, which ingest turns into a dead
letter with reason ``unit_mismatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from plantstream.errors import PlantstreamError


class UnitError(PlantstreamError):
    """A value cannot be converted between two units (unknown unit or different quantity)."""


@dataclass(frozen=True)
class Conversion:
    """``canonical = value * scale + offset``."""

    scale: float
    offset: float

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def __call__(self, value: float) -> float:
        return value * self.scale + self.offset


IDENTITY = Conversion(1.0, 0.0)

# quantity -> unit -> (scale, offset) into the quantity's base unit (first entry).
_QUANTITIES: dict[str, dict[str, tuple[float, float]]] = {
    "temperature": {"degC": (1.0, 0.0), "degF": (5.0 / 9.0, -32.0 * 5.0 / 9.0), "K": (1.0, -273.15)},
    "pressure": {"bar": (1.0, 0.0), "mbar": (1e-3, 0.0), "Pa": (1e-5, 0.0), "hPa": (1e-3, 0.0),
                 "kPa": (1e-2, 0.0), "MPa": (10.0, 0.0), "psi": (0.0689475729, 0.0),
                 "atm": (1.01325, 0.0)},
    "velocity": {"mm/s": (1.0, 0.0), "m/s": (1000.0, 0.0), "in/s": (25.4, 0.0), "um/s": (1e-3, 0.0)},
    "acceleration": {"m/s2": (1.0, 0.0), "g": (9.80665, 0.0), "mm/s2": (1e-3, 0.0)},
    "current": {"A": (1.0, 0.0), "mA": (1e-3, 0.0), "kA": (1e3, 0.0)},
    "voltage": {"V": (1.0, 0.0), "mV": (1e-3, 0.0), "kV": (1e3, 0.0)},
    "power": {"kW": (1.0, 0.0), "W": (1e-3, 0.0), "MW": (1e3, 0.0), "hp": (0.74569987, 0.0)},
    "flow": {"m3/h": (1.0, 0.0), "l/min": (0.06, 0.0), "l/s": (3.6, 0.0), "m3/s": (3600.0, 0.0),
             "gpm": (0.227124707, 0.0)},
    # rotational speed: a gateway declaring Hz means revolutions per second
    "rotation": {"rpm": (1.0, 0.0), "Hz": (60.0, 0.0), "rps": (60.0, 0.0)},
    "length": {"mm": (1.0, 0.0), "um": (1e-3, 0.0), "m": (1000.0, 0.0), "in": (25.4, 0.0)},
    "ratio": {"%": (1.0, 0.0), "ratio": (100.0, 0.0)},
    "mass_flow": {"kg/h": (1.0, 0.0), "kg/s": (3600.0, 0.0), "t/h": (1000.0, 0.0)},
}

# spellings gateways use for the same unit
_ALIASES = {
    "°C": "degC", "C": "degC", "celsius": "degC", "degc": "degC",
    "°F": "degF", "F": "degF", "fahrenheit": "degF", "degf": "degF",
    "kelvin": "K", "k": "K",
    "PSI": "psi", "kpa": "kPa", "pa": "Pa", "mBar": "mbar", "Bar": "bar", "BAR": "bar",
    "ips": "in/s", "in/sec": "in/s", "mm/sec": "mm/s",
    "amp": "A", "amps": "A", "a": "A", "ma": "mA",
    "w": "W", "kw": "kW",
    "m³/h": "m3/h", "lpm": "l/min", "L/min": "l/min", "L/s": "l/s",
    "RPM": "rpm", "1/min": "rpm", "hz": "Hz",
    "m/s^2": "m/s2", "m/s²": "m/s2",
}

_QUANTITY_OF: dict[str, str] = {u: q for q, units in _QUANTITIES.items() for u in units}


def canonical_name(unit: str) -> str:
    """The table's spelling of ``unit`` (``°F`` -> ``degF``); unknown units come back unchanged."""
    return _ALIASES.get(unit, unit)


@cache
def conversion(from_unit: str, to_unit: str) -> Conversion:
    """The affine conversion from ``from_unit`` to ``to_unit``; raises UnitError if there is none.

    Equal spellings convert by identity even when the table does not know the unit (a
    sensor measured in a unit nobody converts, e.g. ``counts``).
    """
    src, dst = canonical_name(from_unit), canonical_name(to_unit)
    if src == dst:
        return IDENTITY
    q_src, q_dst = _QUANTITY_OF.get(src), _QUANTITY_OF.get(dst)
    if q_src is None or q_dst is None:
        unknown = from_unit if q_src is None else to_unit
        raise UnitError(f"unit {unknown!r} is not known; declare one of "
                        f"{sorted(_QUANTITY_OF)} (or fix the asset registry)")
    if q_src != q_dst:
        raise UnitError(f"cannot convert {from_unit} ({q_src}) to {to_unit} ({q_dst}); "
                        "check the sensor's unit in the asset registry")
    s1, o1 = _QUANTITIES[q_src][src]
    s2, o2 = _QUANTITIES[q_dst][dst]
    # value -> base: v*s1 + o1; base -> dst: (b - o2) / s2
    return Conversion(s1 / s2, (o1 - o2) / s2)


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert one value; prefer :func:`conversion` once per sensor for batches."""
    return conversion(from_unit, to_unit)(value)


def known_units() -> list[str]:
    return sorted(_QUANTITY_OF)


def duration(seconds: float) -> str:
    """A length of time in the unit a person would use (alert titles, the board).

    >>> duration(45), duration(900), duration(5400), duration(200_000)
    ('45 s', '15 min', '1.5 h', '2.3 days')
    """
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
