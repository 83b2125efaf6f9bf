"""One gateway message -> one normalized reading batch (plus dead letters).

Per machine, a tag table (built once per registry version) holds everything a reading needs:
the encoded sensor id, the conversion from the gateway's unit and the encoded unit/quality
tail, so the per-reading work is a dict lookup, a multiply-add and a few list appends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ingest.dedup import SeenBatches
from plantstream.assets import AssetRegistry
from plantstream.deadletter import CONTENT_TYPE_READING_JSON, DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.gateway.contract import GatewayLimits, decode_gateway_message
from plantstream.kafka import Output
from plantstream.readingbatch import encode_readings, quality_bytes, string_bytes
from plantstream.telemetry import inject_headers
from plantstream.topics import machine_key
from plantstream.units import IDENTITY, Conversion, UnitError, conversion

GOOD_QUALITY = 192


@dataclass(frozen=True)
class TagEntry:
    """What ingest needs to turn one gateway tag's reading into a canonical reading."""

    sensor: str
    unit: str  # canonical
    gateway_unit: str  # assumed when a reading carries no unit
    conv: Conversion | None  # gateway_unit -> unit; None when the registry's pair cannot convert
    conv_error: str
    sensor_field: bytes
    unit_field: bytes
    good_tail: bytes  # unit_field + quality 192


def tag_table(asset: dict[str, Any]) -> dict[str, TagEntry]:
    table = {}
    for s in asset["sensors"]:
        gw_unit = s.get("gateway_unit") or s["unit"]
        try:
            conv: Conversion | None = conversion(gw_unit, s["unit"])
            err = ""
        except UnitError as exc:
            conv, err = None, str(exc)
        unit_field = string_bytes(s["unit"])
        table[s["tag"]] = TagEntry(s["sensor"], s["unit"], gw_unit, conv, err, string_bytes(s["sensor"]),
                                   unit_field, unit_field + quality_bytes(GOOD_QUALITY))
    return table


class Normalizer:
    """Turns gateway messages into reading_batch Outputs and dead letters."""

    def __init__(self, registry: AssetRegistry, seen: SeenBatches, dead: DeadLetters, out_topic: str,
                 limits: GatewayLimits) -> None:
        self.registry = registry
        self.seen = seen
        self.dead = dead
        self.out_topic = out_topic
        self.limits = limits
        self._tables: dict[tuple[str, str, str], dict[str, TagEntry] | None] = {}
        self._tables_version = -1

    def _table(self, mid: tuple[str, str, str]) -> dict[str, TagEntry] | None:
        if self.registry.version != self._tables_version:
            self._tables.clear()
            self._tables_version = self.registry.version
        try:
            return self._tables[mid]
        except KeyError:
            asset = self.registry.machine(*mid)
            table = None if asset is None else tag_table(asset)
            self._tables[mid] = table
            return table

    def normalize(self, src: Source, now_us: int) -> list[Output]:
        try:
            batch = decode_gateway_message(src.value, src.headers, self.limits)
        except DecodeError as exc:
            return [self.dead.make(src, exc.reason, exc.detail, now_us=now_us)]
        tenant, site, machine = batch["tenant"], batch["site"], batch["machine"]
        mid = (tenant, site, machine)
        who = {"tenant": tenant, "site": site, "machine": machine, "now_us": now_us}
        table = self._table(mid)
        if table is None:
            return [self.dead.make(src, "unknown_machine",
                                   f"machine {tenant}/{site}/{machine} is not in the asset registry; "
                                   "add it with `plantstream assets apply` and replay", **who)]
        batch_id = batch["batch_id"]
        if self.seen.check_and_add(src.partition, (tenant, site, machine, batch_id), now_us):
            return [self.dead.make(src, "duplicate_batch",
                                   f"batch {batch_id!r} of {tenant}/{site}/{machine} was already "
                                   "ingested; a gateway re-sent it (kept here so every sent reading "
                                   "is accounted for)", **who)]
        outs: list[Output] = []
        indices: list[int] = []
        sensor_fields: list[bytes] = []
        ts: list[int] = []
        values: list[float] = []
        tails: list[bytes] = []
        for i, r in enumerate(batch["readings"]):
            e = table.get(r["tag"])
            if e is None:
                outs.append(self._reading_dead(src, i, r, "unknown_tag",
                                               f"tag {r['tag']!r} is not mapped to a sensor of {tenant}/"
                                               f"{site}/{machine}; add it to the asset registry", who))
                continue
            unit = r["unit"]
            if unit is None or unit == e.gateway_unit:
                conv = e.conv
                if conv is None:
                    outs.append(self._reading_dead(src, i, r, "unit_mismatch", e.conv_error, who, e.sensor))
                    continue
            else:
                try:
                    conv = conversion(unit, e.unit)
                except UnitError as exc:
                    outs.append(self._reading_dead(src, i, r, "unit_mismatch", str(exc), who, e.sensor))
                    continue
            indices.append(i)
            sensor_fields.append(e.sensor_field)
            ts.append(r["ts"])
            v = r["value"]
            values.append(v if conv is IDENTITY else v * conv.scale + conv.offset)
            q = r["quality"]
            tails.append(e.good_tail if q == GOOD_QUALITY else e.unit_field + quality_bytes(q))
        if indices:
            value = encode_readings(batch_id, tenant, site, machine, batch["gateway"], now_us,
                                    indices, sensor_fields, ts, values, tails)
            outs.append(Output(self.out_topic, machine_key(tenant, site, machine), value, inject_headers()))
        return outs

    def _reading_dead(self, src: Source, index: int, r: dict[str, Any], reason: str, detail: str,
                      who: dict[str, Any], sensor: str | None = None) -> Output:
        original = json.dumps(r, separators=(",", ":")).encode()
        return self.dead.make(src, reason, detail, index=index, sensor=sensor or r["tag"], ts=r["ts"],
                              value=r["value"], original=original,
                              original_content_type=CONTENT_TYPE_READING_JSON, **who)
