"""Replay recorded readings (CSV or Parquet, wide format: a time column and one column per
sensor) as one machine's gateway would send them: at the recorded pace, faster, or as fast
as possible.

Empty or NaN cells are not sent (the gateway had no reading). Naive timestamps are UTC.
By default timestamps are rebased to now (so the platform, which rejects stale and future
readings, accepts them): a paced replay starts at now, an as-fast-as-possible one ends at
now. ``rebase=False`` keeps the recorded times (for archiving history).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plantstream.gateway.errors import GatewayError

_NAMESPACE = uuid.UUID("0c9b6e2a-7d41-4f3e-8a55-3e1f0b9d2c47")
_TIME_NAMES = ("datetime", "timestamp", "time", "ts", "date")
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}


@dataclass
class Recording:
    """A recording ready to replay: row times (us, UTC) and a value matrix (rows x tags)."""

    times_us: np.ndarray
    tags: list[str]
    values: np.ndarray

    @property
    def readings(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))


def read_table(path: Path, sep: str | None = None) -> pa.Table:
    """A CSV (separator sniffed from the header unless given) or Parquet file as an Arrow table."""
    if not path.is_file():
        raise GatewayError(f"replay file {path} not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        from pyarrow import csv

        if sep is None:
            with path.open(encoding="utf-8", errors="replace") as fh:
                header = fh.readline()
            sep = max((";", ",", "\t"), key=header.count)
        return csv.read_csv(path, parse_options=csv.ParseOptions(delimiter=sep))
    except (pa.ArrowInvalid, OSError) as exc:
        raise GatewayError(f"cannot read {path}: {exc}") from None


def _times_us(column: pa.ChunkedArray, name: str, time_unit: str) -> np.ndarray:
    kind = column.type
    try:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = pc.cast(column, pa.timestamp("us"))
            kind = column.type
        if pa.types.is_timestamp(kind):
            return pc.cast(column, pa.timestamp("us", tz=kind.tz)).cast(pa.int64()).to_numpy()
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return np.round(column.to_numpy().astype(float) * _UNIT_US[time_unit]).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise GatewayError(f"time column {name!r} cannot be read as times: {exc}") from None
    raise GatewayError(f"time column {name!r} has type {kind}; expected timestamps or numbers "
                       "(use --time-column to pick another column)")


def prepare(table: pa.Table, *, time_column: str | None = None, mapping: Mapping[str, str] | None = None,
            skip: Sequence[str] = (), mapped_only: bool = False, time_unit: str = "s") -> Recording:
    """Pick the time column, drop skipped columns, rename mapped ones to gateway tags."""
    mapping = dict(mapping or {})
    names = table.column_names
    if time_column is None:
        time_column = next((n for n in names if n.strip().lower() in _TIME_NAMES), names[0])
    for col in [time_column, *mapping, *skip]:
        if col not in names:
            raise GatewayError(f"column {col!r} is not in the file (columns: {', '.join(names)})")
    if time_unit not in _UNIT_US:
        raise GatewayError(f"time unit {time_unit!r}: use s, ms or us")
    if table.column(time_column).null_count:
        raise GatewayError(f"time column {time_column!r} has empty cells")
    times = _times_us(table.column(time_column), time_column, time_unit)
    cols = [n for n in names if n != time_column and n not in skip and (n in mapping or not mapped_only)]
    if not cols:
        raise GatewayError("no value columns left to replay (check --skip and --map)")
    matrix = np.empty((table.num_rows, len(cols)))
    for j, name in enumerate(cols):
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type) or pa.types.is_null(column.type)):
            raise GatewayError(f"column {name!r} is not numeric ({column.type}); skip it with --skip")
        matrix[:, j] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return Recording(times, [mapping.get(c, c) for c in cols], matrix)


def replay_batches(rec: Recording, *, tenant: str, site: str, machine: str, gateway: str | None = None,
                   batch_size: int = 100, speed: float = 0.0, rebase: bool = True,
                   now_us: int | None = None) -> Iterator[tuple[dict[str, Any], float | None]]:
    """(batch, due) pairs: ``due`` is seconds after the first batch at ``speed`` x the recorded
    pace, or None (as fast as possible) when ``speed`` is 0."""
    if speed < 0:
        raise GatewayError("speed must be >= 0 (0: as fast as possible, 1: recorded pace)")
    times = rec.times_us
    if times.size == 0:
        return
    now_us = int(time.time() * 1_000_000) if now_us is None else now_us
    shift = 0
    if rebase:
        shift = now_us - int(times[0] if speed > 0 else times[-1])
    n_tags = len(rec.tags)
    per_batch = max(1, batch_size // n_tags)
    gateway = gateway or f"gw-replay-{machine}"
    seq = 0
    for lo in range(0, times.size, per_batch):
        hi = min(times.size, lo + per_batch)
        stamps = times[lo:hi] + shift
        vals = rec.values[lo:hi].ravel()
        keep = ~np.isnan(vals)
        tags = rec.tags * (hi - lo)
        flat_ts = np.repeat(stamps, n_tags)
        if keep.all():
            rows = zip(tags, flat_ts.tolist(), vals.tolist(), strict=True)
        else:
            kept = compress(tags, keep.tolist())
            rows = zip(kept, flat_ts[keep].tolist(), vals[keep].tolist(), strict=False)
        readings = [{"tag": g, "ts": s, "value": v, "unit": None, "quality": 192} for g, s, v in rows]
        due = (int(times[hi - 1]) - int(times[0])) / 1_000_000 / speed if speed > 0 else None
        if not readings:
            continue
        yield {
            "batch_id": str(uuid.uuid5(_NAMESPACE, f"{tenant}/{site}/{machine}/{stamps[0]}/{lo}")),
            "tenant": tenant, "site": site, "machine": machine, "gateway": gateway,
            "sent_at": int(stamps[-1]), "sequence": seq, "readings": readings,
        }, due
        seq += 1
