"""A fast path for ``reading_batch`` records, the hottest Avro on the platform.

fastavro builds a dict per reading (about 2 µs each way here); ingest and validation only
need columns. This module writes and reads the same bytes (Avro single-object encoding of
the latest ``reading_batch`` schema, v2 with the gateway's ``sent_at``) column-wise:

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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

import numpy as np

from plantstream.avro import HEADER_LEN, MAGIC, AvroCodec
from plantstream.errors import DecodeError, SchemaError
from plantstream.schemas import default_registry

_SCHEMA = default_registry().latest("reading_batch")
_HEADER = MAGIC + struct.pack("<Q", _SCHEMA.fingerprint)
_EXPECTED = (("batch_id", "string"), ("tenant", "string"), ("site", "string"), ("machine", "string"),
             ("gateway", "string"), ("ingest_time", "long"), ("sent_at", ("null", "long")),
             ("readings", (("reading_id", "string"), ("sensor", "string"), ("ts", "long"),
                           ("value", "double"), ("unit", "string"), ("quality", "int"))))


def _shape(fields: list[dict]) -> tuple:
    out = []
    for f in fields:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array":
            out.append((f["name"], _shape(t["items"]["fields"])))
        elif isinstance(t, list):
            out.append((f["name"], tuple(x["type"] if isinstance(x, dict) else x for x in t)))
        else:
            out.append((f["name"], t["type"] if isinstance(t, dict) else t))
    return tuple(out)


if _shape(_SCHEMA.raw["fields"]) != _EXPECTED:
    raise SchemaError(f"{_SCHEMA.ref} no longer has the layout plantstream.readingbatch writes; "
                      "update its encoder/decoder together with the schema")

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_U64 = np.uint64
_SPREAD = ((_U64(0xFFFFFFF), _U64(0xFFFFFFF0000000), _U64(4)),
           (_U64(0x00003FFF00003FFF), _U64(0x0FFFC0000FFFC000), _U64(2)),
           (_U64(0x007F007F007F007F), _U64(0x3F803F803F803F80), _U64(1)))
_CONT = _U64(0x0080808080808080)
_EIGHT_LO, _EIGHT_HI = 1 << 49, 1 << 56  # zigzag values whose varint is exactly 8 bytes
_TSVAL = np.dtype([("t", "<u8"), ("v", "<f8")])
_AR16 = np.arange(16)
_HIGH_BITS = _U64(0x8080808080808080)
_ONE, _ZERO = _U64(1), _U64(0)
_GATHER = tuple((keep, move << shift, shift) for keep, move, shift in reversed(_SPREAD))


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
    t = np.asarray(ts, dtype=np.int64)
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
    return [long_bytes(x) + pack(v) for x, v in zip(t.tolist(), np.asarray(values, np.float64).tolist(),
                                                      strict=True)]


def encode_readings(batch_id: str, tenant: str, site: str, machine: str, gateway: str, ingest_time: int,
                    indices: list[int], sensor_fields: list[bytes], ts: Sequence[int] | np.ndarray,
                    values: Sequence[float] | np.ndarray, tail_fields: list[bytes],
                    sent_at: int | None = None) -> bytes:
    """Encode one reading_batch. ``sensor_fields[i]`` is ``string_bytes(sensor)``;
    ``tail_fields[i]`` is ``string_bytes(unit) + quality_bytes(quality)``; reading ids are
    ``f"{batch_id}:{indices[i]}"``; ``sent_at`` is the gateway's send time (None: unknown)."""
    tv = _ts_value_pieces(ts, values)
    prefix = batch_id.encode() + b":"
    lp = len(prefix)
    parts = [_HEADER, string_bytes(batch_id), string_bytes(tenant), string_bytes(site),
             string_bytes(machine), string_bytes(gateway), long_bytes(ingest_time),
             b"\x00" if sent_at is None else b"\x02" + long_bytes(sent_at)]
    if indices:
        parts.append(long_bytes(len(indices)))
        ids = [_id_length(lp + len(d)) + prefix + d for d in [b"%d" % i for i in indices]]
        parts.extend(chain.from_iterable(zip(ids, sensor_fields, tv, tail_fields, strict=True)))
    parts.append(b"\x00")
    return b"".join(parts)


def _id_length(n: int) -> bytes:
    return _LEN[n] if n < 4096 else long_bytes(n)


def read_long(b: bytes, p: int) -> tuple[int, int]:
    """Avro long at byte ``p`` -> (value, next position); ValueError past 10 bytes or 64 bits
    (a 10th byte above 1: Python would give a number no int64 column can hold)."""
    shift = z = 0
    while True:
        x = b[p]
        p += 1
        z |= (x & 0x7F) << shift
        if x < 0x80:
            if shift == 63 and x > 1:
                raise ValueError("varint beyond 64 bits")
            return (z >> 1) ^ -(z & 1), p
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


_read_long = read_long  # the older private name (tests/readings_support.py uses it)


def read_len(b: bytes, p: int) -> tuple[int, int]:
    """An Avro string/bytes length at ``p``; ValueError if negative or past the end."""
    n, p = read_long(b, p)
    if n < 0 or p + n > len(b):
        raise ValueError(f"bad length {n} at byte {p}")
    return n, p


def read_strings(b: bytes, p: int, count: int) -> tuple[list[str], int]:
    """``count`` consecutive Avro strings at ``p`` (strict UTF-8) and the position after them:
    the header of both batch records (batch_id, tenant, site, machine, gateway)."""
    out = []
    for _ in range(count):
        n, p = read_len(b, p)
        out.append(b[p:p + n].decode())
        p += n
    return out, p


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
    sent_at: int | None  # gateway clock at send (v2); None from v1 writers
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
                           rec["ingest_time"], [], [], [], [], [], sent_at=rec["sent_at"])
    # reading ids from other versions are kept verbatim, so rebuild the array by hand
    pieces = [string_bytes(i) + string_bytes(r["sensor"]) + long_bytes(r["ts"])
              + struct.pack("<d", r["value"]) + string_bytes(r["unit"]) + quality_bytes(r["quality"])
              for i, r in zip(ids, rs, strict=True)]
    if not pieces:
        return body
    return body[:-1] + long_bytes(len(pieces)) + b"".join(pieces) + b"\x00"


class Misparse(Exception):
    """The fast walk guessed an 8-byte timestamp wrongly; walk again exactly."""


_Misparse = Misparse


def _parse(b: bytes, fast: bool) -> ReadingBatchView:
    header, p = read_strings(b, HEADER_LEN, 5)
    ingest_time, p = _read_long(b, p)
    sent_at = None
    u = b[p]
    if u == 2:
        sent_at, p = _read_long(b, p + 1)
    elif u == 0:
        p += 1
    else:
        raise ValueError(f"union index {(u >> 1) ^ -(u & 1)} of sent_at at byte {p}")
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
                n, p = read_len(b, p)
                p += n
            n = b[p]
            if n < 0x80 and not n & 1:
                n >>= 1
                p += 1
            else:
                n, p = read_len(b, p)
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
                n, p = read_len(b, p)
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
                if not _INT_MIN <= q <= _INT_MAX:
                    raise ValueError(f"quality {q} does not fit the schema's 32-bit int")
                quals.append(q)
            if not fast:
                ends.append(p)
        if fast:
            ends = starts[1:]
            ends.append(p)
    if p != len(b):
        raise ValueError(f"{len(b) - p} trailing bytes after the record")
    if fast:
        ts, values = ts_values_at(b, pos)
    else:
        ts, values = np.array(pos, dtype=np.int64), np.array(vals, dtype=np.float64)
    return ReadingBatchView(b, *header, ingest_time, sent_at, head_end, sensors, ts, values, quals, starts,
                            ends)


def ts_values_at(b: bytes, pos: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (8-byte Avro longs) and the doubles right after them, at byte offsets ``pos``,
    decoded for all readings at once; raises Misparse if any of them is not an 8-byte varint.
    Few numpy calls on small arrays: what they cost is per call, not per reading."""
    if len(pos) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    w = np.frombuffer(b, np.uint8)[np.asarray(pos)[:, None] + _AR16].view("<u8")  # (n, 2): ts, value
    t = w[:, 0]
    if ((t & _HIGH_BITS) != _CONT).any():
        raise Misparse
    for keep, move, shift in _GATHER:  # 8 groups of 7 bits -> one 56-bit number
        t = (t & keep) | ((t & move) >> shift)
    ts = ((t >> _ONE) ^ (_ZERO - (t & _ONE))).view(np.int64)
    return ts, np.ascontiguousarray(w[:, 1]).view("<f8")


def peek_header(data: bytes) -> tuple[str, str, str, str, int] | None:
    """``(batch_id, tenant, site, machine, readings)`` of a reading_batch written by this module,
    read from its first bytes without decoding the readings (for span attributes on the hot
    path); None for anything else (other writer versions, malformed bytes)."""
    if data[:HEADER_LEN] != _HEADER:
        return None
    try:
        p = HEADER_LEN
        fields = []
        for _ in range(4):
            n, p = read_len(data, p)
            fields.append(data[p:p + n].decode())
            p += n
        n, p = read_len(data, p)  # gateway
        _, p = _read_long(data, p + n)  # ingest_time
        if data[p] == 2:  # sent_at present
            _, p = _read_long(data, p + 1)
        elif data[p] == 0:
            p += 1
        else:
            return None
        count, _ = _read_long(data, p)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return fields[0], fields[1], fields[2], fields[3], abs(count)
