"""A fast path for ``reading_batch`` records, the hottest Avro on the platform.

fastavro builds a dict per reading (about 2 µs each way here); ingest and validation only
need columns. This module writes and reads the same bytes (Avro single-object encoding of
the latest ``reading_batch`` schema) column-wise:

- :func:`encode_readings` assembles the record from pre-encoded pieces, with timestamps and
  values encoded for the whole batch at once in numpy.
- :func:`decode_readings` walks the record once, keeping each reading's byte span, and
  decodes timestamps and values vectorised. A subset of readings is re-emitted by copying
  spans (:meth:`ReadingBatchView.subset`): no re-encoding, no schema resolution.

Older writer versions (other fingerprints of ``reading_batch``) are decoded with fastavro and
re-encoded once. The module checks at import that the schema still has the shape it writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from plantstream.avro import HEADER_LEN, MAGIC, AvroCodec
from plantstream.errors import DecodeError, SchemaError
from plantstream.schemas import default_registry

_SCHEMA = default_registry().latest("reading_batch")
_HEADER = MAGIC + struct.pack("<Q", _SCHEMA.fingerprint)
_EXPECTED = (("batch_id", "string"), ("tenant", "string"), ("site", "string"), ("machine", "string"),
             ("gateway", "string"), ("ingest_time", "long"),
             ("readings", (("reading_id", "string"), ("sensor", "string"), ("ts", "long"),
                           ("value", "double"), ("unit", "string"), ("quality", "int"))))


def _shape(fields: list[dict]) -> tuple:
    out = []
    for f in fields:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array":
            out.append((f["name"], _shape(t["items"]["fields"])))
        else:
            out.append((f["name"], t["type"] if isinstance(t, dict) else t))
    return tuple(out)


if _shape(_SCHEMA.raw["fields"]) != _EXPECTED:
    raise SchemaError(f"{_SCHEMA.ref} no longer has the layout plantstream.readingbatch writes; "
                      "update its encoder/decoder together with the schema")

_U64 = np.uint64
_SPREAD = ((_U64(0xFFFFFFF), _U64(0xFFFFFFF0000000), _U64(4)),
           (_U64(0x00003FFF00003FFF), _U64(0x0FFFC0000FFFC000), _U64(2)),
           (_U64(0x007F007F007F007F), _U64(0x3F803F803F803F80), _U64(1)))
_CONT = _U64(0x0080808080808080)
_EIGHT_LO, _EIGHT_HI = 1 << 49, 1 << 56  # zigzag values whose varint is exactly 8 bytes
_TSVAL = np.dtype([("t", "<u8"), ("v", "<f8")])
_AR8 = np.arange(8)


def long_bytes(n: int) -> bytes:
    """Avro long/int (zigzag varint)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


@lru_cache(maxsize=65536)
def string_bytes(s: str) -> bytes:
    """Avro string: length then UTF-8 (cached: sensor ids and units repeat)."""
    b = s.encode()
    return long_bytes(len(b)) + b


_LEN = [long_bytes(i) for i in range(4096)]
_QUALITY = {q: long_bytes(q) for q in range(256)}


def quality_bytes(q: int) -> bytes:
    return _QUALITY.get(q) or long_bytes(q)


def _ts_value_pieces(ts: list[int], values: list[float]) -> list[bytes]:
    """Encoded ``ts`` + ``value`` of each reading; the common 8-byte timestamp case in numpy."""
    n = len(ts)
    t = np.array(ts, dtype=np.int64)
    z = ((t << 1) ^ (t >> 63)).view(np.uint64)
    if n and int(z.min()) >= _EIGHT_LO and int(z.max()) < _EIGHT_HI:
        for keep, move, shift in _SPREAD:
            z = (z & keep) | ((z & move) << shift)
        rows = np.empty(n, _TSVAL)
        rows["t"] = z | _CONT
        rows["v"] = values
        blob = rows.tobytes()
        return [blob[i:i + 16] for i in range(0, 16 * n, 16)]
    pack = struct.Struct("<d").pack
    return [long_bytes(x) + pack(v) for x, v in zip(ts, values, strict=True)]


def encode_readings(batch_id: str, tenant: str, site: str, machine: str, gateway: str, ingest_time: int,
                    indices: list[int], sensor_fields: list[bytes], ts: list[int], values: list[float],
                    tail_fields: list[bytes]) -> bytes:
    """Encode one reading_batch. ``sensor_fields[i]`` is ``string_bytes(sensor)``;
    ``tail_fields[i]`` is ``string_bytes(unit) + quality_bytes(quality)``; reading ids are
    ``f"{batch_id}:{indices[i]}"``."""
    tv = _ts_value_pieces(ts, values)
    prefix = batch_id.encode() + b":"
    lp = len(prefix)
    parts = [_HEADER, string_bytes(batch_id), string_bytes(tenant), string_bytes(site),
             string_bytes(machine), string_bytes(gateway), long_bytes(ingest_time)]
    if indices:
        parts.append(long_bytes(len(indices)))
        ap = parts.append
        lens = _LEN
        for i, idx in enumerate(indices):
            d = b"%d" % idx
            n = lp + len(d)
            ap(lens[n] if n < 4096 else long_bytes(n))
            ap(prefix)
            ap(d)
            ap(sensor_fields[i])
            ap(tv[i])
            ap(tail_fields[i])
    parts.append(b"\x00")
    return b"".join(parts)


def _read_long(b: bytes, p: int) -> tuple[int, int]:
    shift = z = 0
    while True:
        x = b[p]
        p += 1
        z |= (x & 0x7F) << shift
        if x < 0x80:
            return (z >> 1) ^ -(z & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _read_len(b: bytes, p: int) -> tuple[int, int]:
    n, p = _read_long(b, p)
    if n < 0 or p + n > len(b):
        raise ValueError(f"bad length {n} at byte {p}")
    return n, p


@dataclass
class ReadingBatchView:
    """A decoded reading_batch: header fields plus per-reading columns and byte spans."""

    data: bytes
    batch_id: str
    tenant: str
    site: str
    machine: str
    gateway: str
    ingest_time: int
    head_end: int  # readings array starts here
    sensors: list[bytes]
    ts: np.ndarray
    values: np.ndarray
    quality: list[int]
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.starts)

    def reading_bytes(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.ends[i]]

    def reading_id(self, i: int) -> str:
        n, p = _read_long(self.data, self.starts[i])
        return self.data[p:p + n].decode("utf-8", errors="replace")

    def subset(self, keep: list[int]) -> bytes:
        """The same batch with only the readings at ``keep`` (byte copies, in order)."""
        if len(keep) == len(self.starts):
            return self.data
        d, s, e = self.data, self.starts, self.ends
        body = b"".join([d[s[i]:e[i]] for i in keep])
        return b"".join((d[:self.head_end], long_bytes(len(keep)) if keep else b"", body, b"\x00"))


def decode_readings(data: bytes, codec: AvroCodec | None = None) -> ReadingBatchView:
    """Decode a reading_batch message; raises DecodeError with a dead-letter reason."""
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise DecodeError("not_avro", "message does not start with the Avro single-object marker C3 01")
    if data[:HEADER_LEN] != _HEADER:
        data = _reencode_other_version(data, codec or AvroCodec())
    try:
        try:
            return _parse(data, fast=True)
        except (IndexError, ValueError, struct.error, UnicodeDecodeError, _Misparse):
            return _parse(data, fast=False)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise DecodeError("malformed_avro", f"{_SCHEMA.ref} body cannot be decoded: {exc!r}") from None


def _reencode_other_version(data: bytes, codec: AvroCodec) -> bytes:
    rec = codec.decode(data, "reading_batch")  # raises unknown_schema / wrong_schema / malformed_avro
    rs = rec["readings"]
    ids = [r["reading_id"] for r in rs]
    body = encode_readings(rec["batch_id"], rec["tenant"], rec["site"], rec["machine"], rec["gateway"],
                           rec["ingest_time"], [], [], [], [], [])
    # reading ids from other versions are kept verbatim, so rebuild the array by hand
    pieces = [string_bytes(i) + string_bytes(r["sensor"]) + long_bytes(r["ts"])
              + struct.pack("<d", r["value"]) + string_bytes(r["unit"]) + quality_bytes(r["quality"])
              for i, r in zip(ids, rs, strict=True)]
    if not pieces:
        return body
    return body[:-1] + long_bytes(len(pieces)) + b"".join(pieces) + b"\x00"


class _Misparse(Exception):
    """The fast walk guessed an 8-byte timestamp wrongly; walk again exactly."""


def _parse(b: bytes, fast: bool) -> ReadingBatchView:
    p = HEADER_LEN
    header = []
    for _ in range(5):
        n, p = _read_len(b, p)
        header.append(b[p:p + n].decode())
        p += n
    ingest_time, p = _read_long(b, p)
    head_end = p
    sensors: list[bytes] = []
    starts: list[int] = []
    ends: list[int] = []
    quals: list[int] = []
    pos: list[int] = []  # fast: byte offset of each ts; exact: the ts itself
    vals: list[float] = []
    unpack_d = struct.Struct("<d").unpack_from
    blocks = 0
    while True:
        count, p = _read_long(b, p)
        if count == 0:
            break
        blocks += 1
        if fast and blocks > 1:
            raise _Misparse  # several array blocks (another writer): the exact walk keeps every end
        if count < 0:
            count = -count
            _, p = _read_long(b, p)
        for _ in range(count):
            starts.append(p)
            n = b[p]
            if n < 0x80 and not n & 1:
                p += 1 + (n >> 1)
            else:
                n, p = _read_len(b, p)
                p += n
            n = b[p]
            if n < 0x80 and not n & 1:
                n >>= 1
                p += 1
            else:
                n, p = _read_len(b, p)
            sensors.append(b[p:p + n])
            p += n
            if fast:
                if b[p + 7] >= 0x80:
                    raise _Misparse
                pos.append(p)
                p += 16
            else:
                t, p = _read_long(b, p)
                pos.append(t)
                vals.append(unpack_d(b, p)[0])
                p += 8
            n = b[p]
            if n < 0x80 and not n & 1:
                p += 1 + (n >> 1)
            else:
                n, p = _read_len(b, p)
                p += n
            q = b[p]
            if q < 0x80:
                quals.append((q >> 1) ^ -(q & 1))
                p += 1
            elif b[p + 1] < 0x80:
                q = (q & 0x7F) | (b[p + 1] << 7)
                quals.append((q >> 1) ^ -(q & 1))
                p += 2
            else:
                q, p = _read_long(b, p)
                quals.append(q)
            if not fast:
                ends.append(p)
        if fast:
            ends = starts[1:]
            ends.append(p)
    if p != len(b):
        raise ValueError(f"{len(b) - p} trailing bytes after the record")
    if fast:
        ts, values = _ts_values_at(b, pos)
    else:
        ts, values = np.array(pos, dtype=np.int64), np.array(vals, dtype=np.float64)
    return ReadingBatchView(b, *header, ingest_time, head_end, sensors, ts, values, quals, starts, ends)


def _ts_values_at(b: bytes, pos: list[int]) -> tuple[np.ndarray, np.ndarray]:
    if not pos:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    arr = np.frombuffer(b, np.uint8)
    idx = np.array(pos)[:, None] + _AR8
    raw = arr[idx]
    if not ((raw[:, :7] >= 0x80).all() and (raw[:, 7] < 0x80).all()):
        raise _Misparse
    z = np.ascontiguousarray(raw).view("<u8").ravel() & _U64(0x7F7F7F7F7F7F7F7F)
    for keep, move, shift in reversed(_SPREAD):
        z = (z & keep) | ((z & (move << shift)) >> shift)
    ts = (z >> _U64(1)).astype(np.int64) ^ -(z & _U64(1)).astype(np.int64)
    values = np.ascontiguousarray(arr[idx + 8]).view("<f8").ravel()
    return ts, values
