"""One gateway message -> one normalized reading batch (plus dead letters).

Per machine, a tag table (built once per registry version) holds everything a reading needs:
the encoded sensor id, the conversion from the gateway's unit and the encoded unit/quality
tail, so the per-reading work is a dict lookup, a multiply-add and a few list appends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ingest.dedup import SeenBatches
from plantstream.assets import AssetRegistry, RegistryView
from plantstream.deadletter import CONTENT_TYPE_READING_JSON, DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.gateway.contract import GatewayLimits, check_key, decode_gateway_columns
from plantstream.kafka import Output
from plantstream.readingbatch import encode_readings, quality_bytes, string_bytes
from plantstream.telemetry import inject_headers
from plantstream.topics import machine_key
from plantstream.units import IDENTITY, Conversion, UnitError, conversion

GOOD_QUALITY = 192


class KeyCheck(Enum):
    """``normalize(..., key=KeyCheck.SKIP)``: the caller has no message key to compare (unit
    tests and benchmarks of the decode path); the service always passes the real key."""

    SKIP = "skip"


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


@dataclass(frozen=True)
class _Mapped:
    sensor_field: bytes
    tail: bytes  # unit + quality
    conv: Conversion


@dataclass(frozen=True)
class _Refused:
    reason: str
    detail: str
    sensor: str | None


def _convert(values: np.ndarray, codes: np.ndarray, convert: list[int], mapped: list[_Mapped]) -> np.ndarray:
    """``value * scale + offset`` where a reading's unit needs converting; identity readings
    keep their exact bits (no ``* 1.0 + 0.0``, which would turn -0.0 into 0.0)."""
    out = values.copy()
    for c in convert:
        at = codes == c
        conv = mapped[c].conv
        out[at] = values[at] * conv.scale + conv.offset
    return out


class Normalizer:
    """Turns gateway messages into reading_batch Outputs and dead letters."""

    def __init__(self, registry: AssetRegistry, seen: SeenBatches, dead: DeadLetters, out_topic: str,
                 limits: GatewayLimits, sender_tenant: Callable[[str], str | None] = lambda _topic: None
                 ) -> None:
        """``sender_tenant(topic)``: the tenant whose gateways alone may write ``topic`` (None:
        the operator's topic, any tenant)."""
        self.registry = registry
        self.sender_tenant = sender_tenant
        self.seen = seen
        self.dead = dead
        self.out_topic = out_topic
        self.limits = limits
        self._tables = RegistryView(registry, tag_table)

    def normalize(self, src: Source, now_us: int,
                  key: bytes | None | KeyCheck = KeyCheck.SKIP) -> list[Output]:
        """One gateway message (``key``: its Kafka key) -> its normalized batch and dead letters."""
        sender = self.sender_tenant(src.topic)
        try:
            batch = decode_gateway_columns(src.value, src.headers, self.limits)
        except DecodeError as exc:  # filed under the tenant that sent it, when the topic says
            return [self.dead.make(src, exc.reason, exc.detail, tenant=sender, now_us=now_us)]
        if sender is not None and batch.tenant != sender:
            # Filed under the sender, not the tenant it names: the named tenant's people and
            # analysts never see what another tenant's gateway tried.
            return [self.dead.make(src, "tenant_mismatch",
                                   f"the batch names tenant {batch.tenant!r} but came from a gateway of "
                                   f"tenant {sender!r} (topic {src.topic}); a gateway may only send "
                                   "its own tenant's readings", tenant=sender, now_us=now_us)]
        tenant, site, machine = batch.tenant, batch.site, batch.machine
        mid = (tenant, site, machine)
        who = {"tenant": tenant, "site": site, "machine": machine, "now_us": now_us}
        table = self._tables.get(mid)
        if table is None:
            return [self.dead.make(src, "unknown_machine",
                                   f"machine {tenant}/{site}/{machine} is not in the asset registry; "
                                   "add it with `plantstream assets apply` and replay", **who)]
        if key is not KeyCheck.SKIP:
            try:
                check_key(batch, key)
            except DecodeError as exc:
                return [self.dead.make(src, exc.reason, exc.detail, **who)]
        batch_id = batch.batch_id
        if self.seen.check_and_add(src.partition, (tenant, site, machine, batch_id), now_us):
            return [self.dead.make(src, "duplicate_batch",
                                   f"batch {batch_id!r} of {tenant}/{site}/{machine} was already "
                                   "ingested; a gateway re-sent it (kept here so every sent reading "
                                   "is accounted for)", **who)]
        # A batch repeats a few (tag, unit, quality) combinations: resolve each once, then map
        # the readings to them by code, without a Python object per reading.
        kinds: dict[tuple[str, str | None, int], int] = {}
        codes = [kinds.setdefault(k, len(kinds)) for k in zip(batch.tags, batch.units, batch.quality,
                                                                    strict=True)]
        resolved = [self._resolve(table, f"{tenant}/{site}/{machine}", *k) for k in kinds]
        outs: list[Output] = []
        if all(type(r) is _Mapped for r in resolved):
            indices = list(range(len(codes)))
        else:
            indices = []
            for i, c in enumerate(codes):
                r = resolved[c]
                if type(r) is _Mapped:
                    indices.append(i)
                else:
                    outs.append(self._reading_dead(src, i, batch.reading(i), r.reason, r.detail, who,
                                                   r.sensor))
        if indices:
            mapped: list[_Mapped] = resolved  # type: ignore[assignment]
            kept = codes if len(indices) == len(codes) else [codes[i] for i in indices]
            ts, values = batch.ts, batch.values
            if len(indices) != len(codes):
                ts, values = ts[indices], values[indices]
            convert = [c for c, r in enumerate(resolved) if type(r) is _Mapped and r.conv is not IDENTITY]
            if convert:
                values = _convert(values, np.array(kept), convert, mapped)
            value = encode_readings(batch_id, tenant, site, machine, batch.gateway, now_us, indices,
                                    [mapped[c].sensor_field for c in kept], ts, values,
                                    [mapped[c].tail for c in kept], sent_at=batch.sent_at)
            outs.append(Output(self.out_topic, machine_key(tenant, site, machine), value, inject_headers()))
        return outs

    @staticmethod
    def _resolve(table: dict[str, TagEntry], where: str, tag: str, unit: str | None,
                 quality: int) -> _Mapped | _Refused:
        """What every reading of machine ``where`` with this tag, unit and quality becomes."""
        e = table.get(tag)
        if e is None:
            return _Refused("unknown_tag", f"tag {tag!r} is not mapped to a sensor of {where}; "
                                           "add it to the asset registry", tag)
        if unit is None or unit == e.gateway_unit:
            conv = e.conv
            if conv is None:
                return _Refused("unit_mismatch", e.conv_error, e.sensor)
        else:
            try:
                conv = conversion(unit, e.unit)
            except UnitError as exc:
                return _Refused("unit_mismatch", str(exc), e.sensor)
        tail = e.good_tail if quality == GOOD_QUALITY else e.unit_field + quality_bytes(quality)
        return _Mapped(e.sensor_field, tail, conv)

    def _reading_dead(self, src: Source, index: int, r: dict[str, Any], reason: str, detail: str,
                      who: dict[str, Any], sensor: str | None = None) -> Output:
        original = json.dumps(r, separators=(",", ":")).encode()
        return self.dead.make(src, reason, detail, index=index, sensor=sensor or r["tag"], ts=r["ts"],
                              value=r["value"], original=original,
                              original_content_type=CONTENT_TYPE_READING_JSON, **who)
