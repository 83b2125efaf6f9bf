"""Plain words for alerts: sensor names, durations, numbers and units as a person reads them.

Why one module: every rule and the alert book describe values the same way, so a title reads
``Bearing temperature 81 degC`` whichever rule wrote it, and no detector score reaches a title.

>>> sensor_name("bearing_temp"), sensor_name("discharge_pressure"), sensor_name("vib")
('Bearing temperature', 'Discharge pressure', 'Vibration')
>>> duration(45), duration(900), duration(5400), duration(200_000)
('45 s', '15 min', '1.5 h', '2.3 days')
>>> num(7.3412), num(1469.6), num(0.000123), num(0.0)
('7.34', '1470', '0.000123', '0')
>>> against_normal(7.3, "mm/s", 3.0, 0.4), against_normal(81.0, "degC", 60.0, 1.23)
('2.4x its normal 3 ± 0.4', '21 degC above its normal 60 ± 1.2')
>>> against_normal(1.0, "rpm", 1470.0, 322.0), against_normal(3.1, "bar", 3.0, 0.1)
('0% of its normal 1470 ± 322', 'close to its normal 3 ± 0.1')
>>> hours(0.4), hours(6.2), hours_band(4.1, 9.0), hours_band(0.2, 0.5)
('24 min', '6.2 h', '4.1-9.0 h', '12-30 min')
"""

from __future__ import annotations

from plantstream.units import duration  # noqa: F401 - part of this module's vocabulary

_WORDS = {"temp": "temperature", "vib": "vibration", "rpm": "speed", "cur": "current"}
TEMPERATURE_UNITS = ("degC", "degF", "K", "°C", "°F")


def sensor_name(sensor: str) -> str:
    """``bearing_temp`` -> ``Bearing temperature``: the id's words, abbreviations spelled out."""
    words = [_WORDS.get(w, w) for w in sensor.replace("-", "_").split("_") if w]
    text = " ".join(words) or sensor
    return text[:1].upper() + text[1:]


def num(value: float) -> str:
    """Three significant digits, no exponent for the values sensors report."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.3g}"


def value_with_unit(value: float, unit: str) -> str:
    return f"{num(value)} {unit}".rstrip()


def hours(h: float) -> str:
    """Hours as ``24 min`` below one hour, else ``6.2 h``."""
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def hours_band(low: float, high: float) -> str:
    """An uncertainty band of hours, in minutes when it is all below an hour."""
    if high < 1:
        return f"{low * 60:.0f}-{high * 60:.0f} min"
    return f"{low:.1f}-{high:.1f} h"


def against_normal(value: float, unit: str, mean: float, sd: float) -> str:
    """How a value compares with the sensor's learned normal: a ratio for quantities with a
    natural zero (vibration, current, pressure), a difference for temperatures."""
    spread = f"{num(mean)} ± {f'{sd:.0f}' if sd >= 100 else f'{sd:.2g}'}"
    if unit in TEMPERATURE_UNITS or mean <= 0:
        delta = value - mean
        return f"{value_with_unit(abs(delta), unit)} {'above' if delta >= 0 else 'below'} its normal {spread}"
    ratio = value / mean
    if ratio >= 1.1:
        return f"{ratio:.1f}x its normal {spread}"
    if ratio <= 0.9:
        return f"{ratio:.0%} of its normal {spread}"
    return f"close to its normal {spread}"
