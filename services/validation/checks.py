"""The checks one reading must pass, applied to a whole batch at once.

Value, quality and timestamp checks are vectorised (numpy over the batch's columns); only the
per-sensor order check walks the surviving readings, because whether a reading is in order
depends on the readings accepted before it. A reading gets the first failing reason in
``REASONS`` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plantstream.readingbatch import ReadingBatchView

BAD_QUALITY_BELOW = 64  # OPC UA: below 64 is "bad"

REASONS = ("ok", "unknown_sensor", "non_finite", "bad_quality", "out_of_range", "future_timestamp",
           "stale_timestamp", "out_of_order", "duplicate_timestamp")
(OK, UNKNOWN_SENSOR, NON_FINITE, BAD_QUALITY, OUT_OF_RANGE, FUTURE, STALE, OUT_OF_ORDER,
 DUPLICATE) = range(len(REASONS))


@dataclass(frozen=True)
class SensorTable:
    """A machine's sensors indexed by their encoded id; slot ``len(names)`` is 'unknown'."""

    index: dict[bytes, int]
    names: list[str]
    lo: np.ndarray
    hi: np.ndarray


def sensor_table(asset: dict[str, Any]) -> SensorTable:
    sensors = asset["sensors"]
    lo = [-np.inf if s.get("min_valid") is None else s["min_valid"] for s in sensors] + [-np.inf]
    hi = [np.inf if s.get("max_valid") is None else s["max_valid"] for s in sensors] + [np.inf]
    return SensorTable({s["sensor"].encode(): i for i, s in enumerate(sensors)},
                       [s["sensor"] for s in sensors], np.array(lo, np.float64), np.array(hi, np.float64))


@dataclass
class Verdict:
    keep: list[int]
    rejected: list[tuple[int, int]]  # (reading index, reason code)
    changed: bool  # last_ts was updated


# A reading stamped ahead of ingest time (within the future tolerance) is accepted, but the
# sensor's order clock moves at most this far past ingest time: one reading 299 s in the
# future would otherwise make every real reading of the next five minutes "out of order".
CLOCK_SLACK_US = 5_000_000


def check_batch(view: ReadingBatchView, table: SensorTable, last_ts: dict[bytes, int],
                future_us: int, stale_us: int) -> Verdict:
    """Judge every reading of ``view``; ``last_ts`` (sensor -> last accepted ts) is updated in place."""
    n = len(view)
    if n == 0:
        return Verdict([], [], False)
    unknown = len(table.names)
    get = table.index.get
    codes = np.array([get(s, unknown) for s in view.sensors], dtype=np.intp)
    vals, ts, it = view.values, view.ts, view.ingest_time
    reason = np.zeros(n, np.int8)
    # lowest priority first: a later assignment wins
    reason[ts < it - stale_us] = STALE
    reason[ts > it + future_us] = FUTURE
    reason[(vals < table.lo[codes]) | (vals > table.hi[codes])] = OUT_OF_RANGE
    reason[np.array(view.quality) < BAD_QUALITY_BELOW] = BAD_QUALITY
    reason[~np.isfinite(vals)] = NON_FINITE
    reason[codes == unknown] = UNKNOWN_SENSOR
    rejected: list[tuple[int, int]] = []
    if reason.any():
        bad = np.flatnonzero(reason)
        rejected = list(zip(bad.tolist(), reason[bad].tolist(), strict=True))
        candidates = np.flatnonzero(reason == OK).tolist()
    else:
        candidates = range(n)
    keep: list[int] = []
    sensors = view.sensors
    tsl = ts.tolist()
    changed = False
    clock_limit = int(it) + CLOCK_SLACK_US
    for i in candidates:
        s = sensors[i]
        t = tsl[i]
        last = last_ts.get(s)
        if last is None or t > last:
            last_ts[s] = min(t, clock_limit)  # a future outlier cannot block the real readings
            keep.append(i)
            changed = True
        else:
            rejected.append((i, DUPLICATE if t == last else OUT_OF_ORDER))
    rejected.sort()
    return Verdict(keep, rejected, changed)


def explain(code: int, view: ReadingBatchView, i: int, table: SensorTable, last_ts: dict[bytes, int],
            future_us: int, stale_us: int) -> str:
    """A sentence saying what is wrong with reading ``i`` and what to do."""
    sensor = view.sensors[i].decode("utf-8", errors="replace")
    t, v = int(view.ts[i]), float(view.values[i])
    lag_s = (view.ingest_time - t) / 1e6
    if code == UNKNOWN_SENSOR:
        return f"sensor {sensor!r} is not in the asset registry for this machine; add it and replay"
    if code == NON_FINITE:
        return f"value {v} is not a finite number; check the gateway or the sensor wiring"
    if code == BAD_QUALITY:
        return f"quality {view.quality[i]} is below {BAD_QUALITY_BELOW} (bad); the source flagged it"
    if code == OUT_OF_RANGE:
        k = table.index[view.sensors[i]]
        return (f"value {v} is outside the valid range [{table.lo[k]}, {table.hi[k]}] of {sensor}; "
                "check the sensor or the registry's 'valid' range")
    if code == FUTURE:
        return (f"timestamp is {-lag_s:.1f}s ahead of ingest time (tolerance {future_us / 1e6:.0f}s); "
                "check the gateway clock")
    if code == STALE:
        return (f"timestamp is {lag_s:.0f}s older than ingest time (limit {stale_us / 1e6:.0f}s); "
                "check the gateway clock or replay with a larger PLANTSTREAM_STALE_AFTER_S")
    last = last_ts.get(view.sensors[i])
    if code == DUPLICATE:
        return f"{sensor} already has a reading at ts {t}"
    return f"ts {t} is before {sensor}'s last accepted reading at ts {last}; readings must arrive in order"
