"""Pure logic of the validation checks (no broker): which reason each reading gets, and the
per-sensor order state."""

from __future__ import annotations

import math

from plantstream.readingbatch import decode_readings, encode_readings, quality_bytes, string_bytes
from validation.checks import REASONS, check_batch, sensor_table

ASSET = {"sensors": [{"sensor": "temp", "min_valid": -40.0, "max_valid": 200.0},
                     {"sensor": "speed", "min_valid": None, "max_valid": None}]}
NOW = 1_800_000_000_000_000
S = 1_000_000


def _view(rows: list[tuple[str, int, float, int]]):
    n = len(rows)
    return decode_readings(encode_readings(
        "b1", "t", "s", "m", "g", NOW, list(range(n)), [string_bytes(r[0]) for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows], [string_bytes("u") + quality_bytes(r[3]) for r in rows]))


def _judge(rows, last=None):
    last_ts = dict(last or {})
    v = check_batch(_view(rows), sensor_table(ASSET), last_ts, future_us=300 * S, stale_us=7 * 86400 * S)
    return v.keep, {i: REASONS[c] for i, c in v.rejected}, last_ts


def test_each_reason() -> None:
    keep, rejected, last = _judge([
        ("temp", NOW - 10 * S, 20.0, 192),        # ok
        ("ghost", NOW - 10 * S, 1.0, 192),        # unknown sensor
        ("temp", NOW - 9 * S, math.nan, 192),     # NaN
        ("speed", NOW - 9 * S, -math.inf, 192),   # -inf (no range: still not finite)
        ("temp", NOW - 8 * S, 20.0, 12),          # bad quality
        ("temp", NOW - 7 * S, 250.0, 192),        # above the valid range
        ("temp", NOW + 600 * S, 20.0, 192),       # 10 min ahead of ingest time
        ("temp", NOW - 8 * 86400 * S, 20.0, 192),  # 8 days old
        ("temp", NOW - 11 * S, 20.0, 192),        # before temp's last accepted ts
        ("temp", NOW - 10 * S, 21.0, 192),        # same ts as the accepted one
        ("speed", NOW - 5 * S, 1e9, 100),         # no range, uncertain quality: ok
    ])
    assert keep == [0, 10]
    assert rejected == {1: "unknown_sensor", 2: "non_finite", 3: "non_finite", 4: "bad_quality",
                        5: "out_of_range", 6: "future_timestamp", 7: "stale_timestamp",
                        8: "out_of_order", 9: "duplicate_timestamp"}
    assert last == {b"temp": NOW - 10 * S, b"speed": NOW - 5 * S}


def test_order_state_carries_over_between_batches() -> None:
    keep, rejected, last = _judge([("temp", NOW - 20 * S, 1.0, 192), ("temp", NOW - 2 * S, 1.0, 192)],
                                  last={b"temp": NOW - 10 * S})
    assert keep == [1] and rejected == {0: "out_of_order"} and last[b"temp"] == NOW - 2 * S


def test_rejected_readings_do_not_move_the_clock() -> None:
    keep, rejected, last = _judge([("temp", NOW - 1 * S, 999.0, 192), ("temp", NOW - 3 * S, 1.0, 192)])
    assert keep == [1] and rejected == {0: "out_of_range"} and last == {b"temp": NOW - 3 * S}


def test_a_future_reading_does_not_poison_the_order_clock() -> None:
    keep, rejected, last = _judge([("temp", NOW + 299 * S, 20.0, 192)])  # within tolerance: kept
    assert keep == [0] and rejected == {}
    assert last[b"temp"] == NOW + 5 * S  # the clock moved only a few seconds past ingest time
    keep, rejected, _ = _judge([("temp", NOW + 6 * S, 21.0, 192), ("temp", NOW + 7 * S, 22.0, 192)], last)
    assert keep == [0, 1] and rejected == {}  # the real readings after it are not out of order
    keep, rejected, _ = _judge([("temp", NOW + 2 * S, 21.0, 192)], last)
    assert keep == [] and rejected == {0: "out_of_order"}  # order is still enforced near now
