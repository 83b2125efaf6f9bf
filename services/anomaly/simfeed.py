"""The factory simulator's gateway batches as ``reading_batch`` records (what validation emits).

Why: the anomaly service's tests and benchmarks need the simulator's realistic machines and
ground truth without running ingest and validation. This does the part of ingest that
matters to the detector, from the asset registry alone: tag -> sensor id and gateway unit ->
canonical unit. Readings with unknown tags or unconvertible units are left out (ingest would
dead-letter them; ``ingest`` tests cover that).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from plantstream.topics import machine_key
from plantstream.units import Conversion, UnitError, conversion

TagMap = dict[str, tuple[str, str, Conversion | None]]  # tag -> (sensor, canonical unit, from gateway unit)


def tag_maps(assets: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], TagMap]:
    """Per machine: gateway tag -> (sensor id, canonical unit, default conversion)."""
    out: dict[tuple[str, str, str], TagMap] = {}
    for a in assets:
        m: TagMap = {}
        for s in a["sensors"]:
            try:
                conv: Conversion | None = conversion(s.get("gateway_unit") or s["unit"], s["unit"])
            except UnitError:
                conv = None
            m[s["tag"]] = (s["sensor"], s["unit"], conv)
        out[(a["tenant"], a["site"], a["machine"])] = m
    return out


def to_reading_batch(batch: dict[str, Any], tags: TagMap, ingest_time: int) -> dict[str, Any]:
    """One gateway batch (dict) -> one reading_batch record in canonical units."""
    readings = []
    bid = batch["batch_id"]
    for i, r in enumerate(batch["readings"]):
        entry = tags.get(r["tag"])
        if entry is None:
            continue
        sensor, unit, conv = entry
        if r.get("unit") not in (None, unit):
            try:
                conv = conversion(r["unit"], unit)
            except UnitError:
                continue
        if conv is None:
            continue
        readings.append({"reading_id": f"{bid}:{i}", "sensor": sensor, "ts": r["ts"],
                         "value": conv(r["value"]), "unit": unit, "quality": r.get("quality", 192)})
    return {"batch_id": bid, "tenant": batch["tenant"], "site": batch["site"], "machine": batch["machine"],
            "gateway": batch["gateway"], "ingest_time": ingest_time, "readings": readings}


def reading_batches(factory: Any, until: float | None = None,
                    batch_size: int = 100) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(key, reading_batch)`` for the simulator ``factory``'s batches up to ``until`` seconds."""
    maps = tag_maps(factory.assets())
    for b in factory.batches(until=until, batch_size=batch_size):
        mid = (b["tenant"], b["site"], b["machine"])
        rec = to_reading_batch(b, maps[mid], b["sent_at"])
        if rec["readings"]:
            yield machine_key(*mid), rec
