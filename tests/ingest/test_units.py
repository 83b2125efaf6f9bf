"""Unit conversion to canonical units (pure logic)."""

from __future__ import annotations

import pytest

from plantstream.units import IDENTITY, UnitError, conversion, convert


@pytest.mark.parametrize(("value", "src", "dst", "expected"), [
    (212.0, "degF", "degC", 100.0), (32.0, "°F", "degC", 0.0), (273.15, "K", "degC", 0.0),
    (100.0, "degC", "degF", 212.0), (14.5037738, "psi", "bar", 1.0), (250.0, "kPa", "bar", 2.5),
    (1e5, "Pa", "bar", 1.0), (1013.25, "mbar", "bar", 1.01325), (1.0, "in/s", "mm/s", 25.4),
    (1500.0, "mA", "A", 1.5), (2500.0, "W", "kW", 2.5), (100.0, "l/min", "m3/h", 6.0),
    (25.0, "Hz", "rpm", 1500.0), (1.0, "g", "m/s2", 9.80665),
])
def test_conversions(value: float, src: str, dst: str, expected: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected, rel=1e-6)


def test_same_unit_is_identity_even_when_unknown() -> None:
    assert conversion("counts", "counts") is IDENTITY
    assert conversion("degC", "°C") is IDENTITY


@pytest.mark.parametrize(("src", "dst", "message"), [
    ("psi", "degC", "cannot convert psi (pressure) to degC (temperature)"),
    ("furlongs", "mm", "unit 'furlongs' is not known"),
    ("bar", "smoots", "unit 'smoots' is not known"),
])
def test_unknown_or_incompatible_pairs_raise(src: str, dst: str, message: str) -> None:
    with pytest.raises(UnitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conversion(src, dst)
