"""A column-wise decoder for ``gateway_batch`` Avro messages, the platform's input.

fastavro builds one dict per reading (about 1.5-1.9 µs each here); ingest only needs
columns. :func:`decode_avro_columns` walks a message once and returns a
:class:`GatewayColumns`: header fields plus per-reading lists (tags, units, quality) and
numpy arrays (timestamps, values, decoded for the whole batch at once).

Exactness comes before speed: the fast walk accepts only the layout it knows (checked against
``schemas/gateway_batch`` at import), 8-byte timestamps, one array block, short quality
varints and strict UTF-8. Anything else (other schema versions, unknown layouts, odd but
legal encodings, truncated or malformed bytes) is handed to fastavro through
:class:`~plantstream.avro.AvroCodec`, which decides: the same record, or the same
DecodeError (``malformed_avro`` and friends). So every input gives what fastavro gives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from plantstream.avro import HEADER_LEN, MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.readingbatch import Misparse, read_len, read_long, read_strings, ts_values_at
from plantstream.schemas import SchemaRegistry, default_registry

SCHEMA = "gateway_batch"
_HEAD = (("batch_id", "string"), ("tenant", "string"), ("site", "string"), ("machine", "string"),
         ("gateway", "string"), ("sent_at", "long"))
_READING = ("readings", (("tag", "string"), ("ts", "long"), ("value", "double"), ("unit", ("null", "string")),
                         ("quality", "int")))
#: The layouts the fast walk reads, by whether they carry ``sequence`` (v2) or not (v1).
LAYOUTS = {(*_HEAD, _READING): False, (*_HEAD, ("sequence", ("null", "long")), _READING): True}


def shape(fields: list[dict[str, Any]]) -> tuple:
    """A schema's record fields as nested (name, type) tuples; unions become tuples of names."""
    out: list[tuple] = []
    for f in fields:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array":
            items = t["items"]
            out.append((f["name"], shape(items["fields"]) if isinstance(items, dict) else items))
        elif isinstance(t, list):
            out.append((f["name"], tuple(x if isinstance(x, str) else x.get("type") for x in t)))
        else:
            out.append((f["name"], t["type"] if isinstance(t, dict) else t))
    return tuple(out)


def fast_writers(registry: SchemaRegistry) -> dict[int, bool]:
    """Fingerprint -> has_sequence for the writer versions the fast walk may read, given the
    registry's reader (latest) version; empty when the reader's layout is not one it knows
    (then everything goes through fastavro, which stays correct, only slower)."""
    reader = registry.latest(SCHEMA)
    if shape(reader.raw["fields"]) not in LAYOUTS:
        return {}
    out: dict[int, bool] = {}
    for sv in registry.versions(SCHEMA):
        has_sequence = LAYOUTS.get(shape(sv.raw["fields"]))
        if has_sequence is not None:
            out[sv.fingerprint] = has_sequence
    return out


@dataclass
class GatewayColumns:
    """One gateway batch, column-wise. ``ts``/``values`` are int64/float64 arrays."""

    batch_id: str
    tenant: str
    site: str
    machine: str
    gateway: str
    sent_at: int
    sequence: int | None
    tags: list[str]
    ts: np.ndarray
    values: np.ndarray
    units: list[str | None]
    quality: list[int]
    via_fastavro: bool = False  # decoded by the fallback (for tests and benchmarks)

    def __len__(self) -> int:
        return len(self.tags)

    def reading(self, i: int) -> dict[str, Any]:
        """Reading ``i`` as the ``gateway_batch`` dict fastavro returns (plain Python types)."""
        return {"tag": self.tags[i], "ts": int(self.ts[i]), "value": float(self.values[i]),
                "unit": self.units[i], "quality": self.quality[i]}

    def to_dict(self) -> dict[str, Any]:
        """The whole batch as ``AvroCodec().decode(data, "gateway_batch")`` returns it."""
        readings = [{"tag": g, "ts": t, "value": v, "unit": u, "quality": q} for g, t, v, u, q in
                    zip(self.tags, self.ts.tolist(), self.values.tolist(), self.units, self.quality,
                        strict=True)]
        return {"batch_id": self.batch_id, "tenant": self.tenant, "site": self.site, "machine": self.machine,
                "gateway": self.gateway, "sent_at": self.sent_at, "sequence": self.sequence,
                "readings": readings}

    @classmethod
    def from_dict(cls, batch: dict[str, Any], via_fastavro: bool = False) -> GatewayColumns:
        """From a decoded ``gateway_batch`` dict (fastavro's, or the JSON contract's)."""
        rs = batch["readings"]
        return cls(batch["batch_id"], batch["tenant"], batch["site"], batch["machine"], batch["gateway"],
                   batch["sent_at"], batch.get("sequence"), [r["tag"] for r in rs],
                   np.array([r["ts"] for r in rs], dtype=np.int64),
                   np.array([r["value"] for r in rs], dtype=np.float64),
                   [r["unit"] for r in rs], [r["quality"] for r in rs], via_fastavro)


class _Fallback(Exception):
    """The fast walk met something it does not read itself: let fastavro decide."""


_TEXT: dict[bytes, str] = {}  # tags and units repeat across messages: decode each once


def _text(raw: bytes) -> str:
    s = _TEXT.get(raw)
    if s is None:
        s = raw.decode()  # strict, as fastavro: invalid UTF-8 raises (-> fallback -> its verdict)
        if len(_TEXT) >= 65536:
            _TEXT.clear()
        _TEXT[raw] = s
    return s


def _long9(b: bytes, p: int) -> tuple[int, int]:
    """An Avro long of at most 9 bytes (63 bits, where every reader agrees on the value)."""
    v, q = read_long(b, p)
    if q - p > 9:
        raise _Fallback
    return v, q


def _reading(b: bytes, p: int, text: dict[bytes, str]) -> tuple[str, str | None, int, int, int]:
    """One reading at ``p`` assuming an 8-byte timestamp: (tag, unit, quality, ts position, end)."""
    n = b[p]
    if n < 0x80 and not n & 1:
        n >>= 1
        p += 1
    else:
        n, p = read_len(b, p)
    raw = b[p:p + n]
    tag = text.get(raw) or _text(raw)
    p += n
    if b[p + 7] >= 0x80:
        raise _Fallback  # not an 8-byte timestamp
    at = p
    p += 16
    u = b[p]
    if u == 0:
        unit = None
        p += 1
    elif u == 2:
        n = b[p + 1]
        if n < 0x80 and not n & 1:
            n >>= 1
            p += 2
        else:
            n, p = read_len(b, p + 1)
        raw = b[p:p + n]
        unit = text.get(raw) or _text(raw)
        p += n
    else:
        raise _Fallback
    q = b[p]
    if q < 0x80:
        return tag, unit, (q >> 1) ^ -(q & 1), at, p + 1
    q2 = b[p + 1]
    if q2 >= 0x80:
        raise _Fallback
    q = (q & 0x7F) | (q2 << 7)
    return tag, unit, (q >> 1) ^ -(q & 1), at, p + 2


_MAX_PERIOD = 64


def _periodic(b: bytes, p: int, count: int) -> tuple[list, list, list, np.ndarray] | None:
    """The readings of a gateway that cycles through the same sensors (the usual case): walk
    one period in Python, then check with numpy that every later reading has byte for byte
    the same tag, unit and quality encoding at the position the period predicts (only
    timestamps and values differ). Then each reading parses exactly as its template, so the
    columns follow without a Python step per reading. None if the batch is not periodic."""
    text = _TEXT
    starts: list[int] = []
    at: list[int] = []
    tags: list[str] = []
    units: list[str | None] = []
    quals: list[int] = []
    k = 0
    first = (b"", b"")  # reading 0 without its timestamp and value: what a period repeats
    for j in range(min(count, _MAX_PERIOD + 1)):
        tag, unit, q, ts_at, end = _reading(b, p, text)
        skeleton = (b[p:ts_at], b[ts_at + 16:end])
        if not j:
            first = skeleton
        elif skeleton == first:
            k = j
            break
        starts.append(p)
        at.append(ts_at)
        tags.append(tag)
        units.append(unit)
        quals.append(q)
        p = end
    if not k:
        return None
    s0, period = starts[0], p - starts[0]
    full, rem = divmod(count, k)
    total = full * period + (starts[rem] - s0 if rem else 0)
    if s0 + total + 1 != len(b) or b[s0 + total] != 0:
        return None  # not where the array's end must be
    skeleton = np.ones(period, dtype=bool)
    for a in at:
        skeleton[a - s0:a - s0 + 16] = False
    reps = full + (1 if rem else 0)
    body = np.frombuffer(b, np.uint8, count=total, offset=s0)
    template = np.tile(body[:period], reps)[:total]
    if np.any((body != template) & np.tile(skeleton, reps)[:total]):
        return None
    pos = (np.arange(reps)[:, None] * period + (np.array(at) - s0)).ravel()[:count] + s0
    return tags * full + tags[:rem], units * full + units[:rem], quals * full + quals[:rem], pos


def _walk(b: bytes, has_sequence: bool) -> GatewayColumns:
    head, p = read_strings(b, HEADER_LEN, 5)
    sent_at, p = _long9(b, p)
    sequence = None
    if has_sequence:
        u = b[p]
        if u == 2:
            sequence, p = _long9(b, p + 1)
        elif u == 0:
            p += 1
        else:
            raise _Fallback
    count, p = read_long(b, p)
    if count < 0:
        raise _Fallback  # blocks with byte sizes: another writer's layout
    cols = _periodic(b, p, count) if count > 1 else None
    if cols is not None:
        tags, units, quals, pos = cols
        p = len(b)
    else:
        tags, units, quals, pos = [], [], [], []
        text = _TEXT
        for _ in range(count):
            tag, unit, q, ts_at, p = _reading(b, p, text)
            tags.append(tag)
            units.append(unit)
            quals.append(q)
            pos.append(ts_at)
        if count:
            if b[p] != 0:
                raise _Fallback  # a second array block
            p += 1
    if p != len(b):
        raise _Fallback  # trailing bytes (or a length that ran past the end)
    ts, values = ts_values_at(b, pos)
    return GatewayColumns(*head, sent_at, sequence, tags, ts, values, units, quals)


# Checked against schemas/ at import: which writer fingerprints the fast walk reads.
DEFAULT_FAST_WRITERS = fast_writers(default_registry())
if not DEFAULT_FAST_WRITERS:
    logging.getLogger(__name__).warning(
        "%s has a layout plantstream.gateway.columns does not know: every gateway message is "
        "decoded by fastavro (slower); teach the column decoder the new layout",
        default_registry().latest(SCHEMA).ref)


class ColumnDecoder:
    """Decodes gateway_batch messages into columns; fastavro (via ``codec``) for the rest."""

    def __init__(self, codec: AvroCodec | None = None) -> None:
        self.codec = codec or AvroCodec()
        registry = self.codec.registry
        self.fast = DEFAULT_FAST_WRITERS if registry is default_registry() else fast_writers(registry)

    def decode(self, data: bytes) -> GatewayColumns:
        """Decode one Avro gateway message; raises DecodeError exactly as AvroCodec.decode."""
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not_avro", "message does not start with the Avro single-object marker C3 01")
        has_sequence = self.fast.get(int.from_bytes(data[2:HEADER_LEN], "little"))
        if has_sequence is not None:
            try:
                return _walk(data, has_sequence)
            except (IndexError, ValueError, UnicodeDecodeError, Misparse, _Fallback):
                pass
        return GatewayColumns.from_dict(self.codec.decode(data, SCHEMA), via_fastavro=True)


_default: ColumnDecoder | None = None


def decode_avro_columns(data: bytes) -> GatewayColumns:
    """:meth:`ColumnDecoder.decode` with the default schema registry."""
    global _default
    if _default is None:
        _default = ColumnDecoder()
    return _default.decode(data)
