"""The gateway contract: what a gateway may put on the ``gateway.readings`` topic.

One Kafka message = one batch of readings from one machine, keyed ``tenant/site/machine``
(ingest checks the key against the batch: :func:`check_key`). The value is either Avro
(schema ``gateway_batch``, single-object encoding) or the equivalent JSON object (UTF-8, each
key once), told apart by the ``content-type`` header (sniffed when absent).

JSON batch (same field names as the Avro schema)::

    {"batch_id": "0b6e...", "tenant": "demo", "site": "plant-1", "machine": "pump-01",
     "gateway": "gw-pump-01", "sent_at": "2026-05-01T12:00:00.5Z", "sequence": 17,
     "readings": [{"tag": "P01.VIB", "ts": 1777636800000000, "value": 1.93,
                   "unit": "mm/s", "quality": 192}, ...]}

``ts``/``sent_at`` are integer microseconds since the epoch or RFC 3339 strings with an
offset; ``unit`` (default null), ``quality`` (default 192) and ``sequence`` (default null) are
optional; unknown fields are ignored. Both formats decode to the same dict, so the ingest
service has one code path after :func:`decode_gateway_message` (dicts) or
:func:`decode_gateway_columns` (columns, what ingest uses).

Every rejection is a :class:`~plantstream.errors.DecodeError` whose ``reason`` is the
dead-letter reason code: empty_message, message_too_large, unsupported_format,
malformed_json, invalid_batch, invalid_id, bad_timestamp, batch_too_large, key_mismatch, and
the Avro codec's not_avro, unknown_schema, wrong_schema, malformed_avro.

Every bound the platform puts on one gateway message is a field of :class:`GatewayLimits`
(sizes from the settings; the rest fixed well above anything a real gateway sends), so
hostile input meets a limit and a reason code, never a recursion, a crash or an unbounded id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.gateway.columns import GatewayColumns, decode_avro_columns
from plantstream.gateway.errors import GatewayError
from plantstream.settings import Settings
from plantstream.topics import machine_key

SCHEMA = "gateway_batch"
HEADER_CONTENT_TYPE = "content-type"
HEADER_GATEWAY = "ps-gateway"
DEFAULT_QUALITY = 192
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STR_FIELDS = ("batch_id", "tenant", "site", "machine", "gateway")
_WHITESPACE = b" \t\r\n"
# What an id, tag or unit may not contain: C0/C1 controls and DEL (ESC [ ... would drive the
# terminal of whoever reads a log line), zero-width and bidirectional format characters (text
# that displays as another id) and surrogates (not Unicode text).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                        r"\u2066-\u206f\ufeff\ud800-\udfff]")
# A JSON escape of a UTF-16 surrogate: json.loads turns a lone one into an unencodable str.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
# json_depth's view of a byte: 0 (anything else), a quote, an opening or a closing bracket.
_QUOTE, _OPEN, _CLOSE = 1, 2, 3
_STRUCTURAL = bytes(_QUOTE if c == 0x22 else _OPEN if c in b"[{" else _CLOSE if c in b"]}" else 0
                    for c in range(256))

Headers = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


@dataclass(frozen=True)
class GatewayLimits:
    """What the platform accepts from one gateway message; anything beyond is dead-lettered.

    ``max_id_chars`` bounds every id (batch, tenant, site, machine, gateway), tag and unit:
    every reading id repeats the batch id, and ids reach logs, SQL and people. A JSON batch
    nests 3 deep (object, readings array, reading object); ``max_json_depth`` leaves room for
    unknown fields while keeping the parser's recursion far from Python's limit."""

    max_readings: int = 5000
    max_bytes: int = 1_048_576
    max_id_chars: int = 128
    max_json_depth: int = 32

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayLimits:
        return cls(settings.max_batch_readings, settings.max_message_bytes)


DEFAULT_LIMITS = GatewayLimits()
_codec: AvroCodec | None = None


def _avro() -> AvroCodec:
    global _codec
    if _codec is None:
        _codec = AvroCodec()
    return _codec


def parse_timestamp(value: Any, path: str) -> int:
    """Integer microseconds since the epoch, from an int or an RFC 3339 string with offset."""
    if type(value) is int:
        if _LONG_MIN <= value <= _LONG_MAX:
            return value
        raise DecodeError("bad_timestamp", f"{path}: {value} does not fit in 64 bits of microseconds")
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeError("bad_timestamp", f"{path}: {value[:64]!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise DecodeError("bad_timestamp",
                              f"{path}: {value[:64]!r} has no UTC offset; add 'Z' or '+hh:mm'")
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise DecodeError("invalid_batch", f"{path}: expected integer microseconds or an RFC 3339 string, "
                                       f"got {type(value).__name__}")


def _wrong(path: str, want: str, got: Any) -> DecodeError:
    return DecodeError("invalid_batch", f"{path}: expected {want}, got {type(got).__name__}")


def _missing(path: str) -> DecodeError:
    return DecodeError("invalid_batch", f"{path}: required field is missing")


def _reading(r: Any, path: str) -> dict[str, Any]:
    """Validate one JSON reading (the slow path, used only once the fast path found a problem
    or a value that needs converting)."""
    if type(r) is not dict:
        raise _wrong(path, "an object", r)
    for key in ("tag", "ts", "value"):
        if key not in r:
            raise _missing(f"{path}.{key}")
    tag, value = r["tag"], r["value"]
    if type(tag) is not str:
        raise _wrong(f"{path}.tag", "a string", tag)
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise DecodeError("invalid_batch", f"{path}.value: integer too large for a double") from None
    elif type(value) is not float:
        raise _wrong(f"{path}.value", "a number", value)
    unit = r.get("unit")
    if unit is not None and type(unit) is not str:
        raise _wrong(f"{path}.unit", "a string or null", unit)
    quality = r.get("quality", DEFAULT_QUALITY)
    if type(quality) is not int or not _INT_MIN <= quality <= _INT_MAX:
        raise _wrong(f"{path}.quality", "a 32-bit integer", quality)
    return {"tag": tag, "ts": parse_timestamp(r["ts"], f"{path}.ts"), "value": value,
            "unit": unit, "quality": quality}


def _readings(items: list[Any], max_readings: int) -> list[dict[str, Any]]:
    if len(items) > max_readings:
        raise DecodeError("batch_too_large",
                          f"{len(items)} readings in one batch; the limit is {max_readings}: "
                          "split the batch (PLANTSTREAM_MAX_BATCH_READINGS)")
    out = []
    append = out.append
    for i, r in enumerate(items):
        # Fast path: the common, already-canonical reading costs a few type checks.
        if type(r) is dict:
            tag, ts, value = r.get("tag"), r.get("ts"), r.get("value")
            unit = r.get("unit")
            quality = r.get("quality", DEFAULT_QUALITY)
            if (type(tag) is str and type(ts) is int and type(value) is float
                    and (unit is None or type(unit) is str) and type(quality) is int
                    and _LONG_MIN <= ts <= _LONG_MAX and _INT_MIN <= quality <= _INT_MAX):
                append({"tag": tag, "ts": ts, "value": value, "unit": unit, "quality": quality})
                continue
        append(_reading(r, f"readings[{i}]"))
    return out


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of JSON text ``data`` nest, brackets inside strings not
    counted; vectorised over the few structural bytes (a millisecond or two for a 5000-reading
    batch), so the parser never meets a nesting it would have to recurse into. Lexes like JSON:
    a quote ends a string unless an odd number of backslashes precedes it (on invalid input
    the count may be off, but the parser stops at the first error before that matters)."""
    kinds = np.frombuffer(data.translate(_STRUCTURAL), np.uint8)
    at = np.flatnonzero(kinds)
    kind = kinds[at]
    quote = kind == _QUOTE
    if b"\\" in data:  # drop escaped quotes: those right after an odd run of backslashes
        bs = np.flatnonzero(np.frombuffer(data, np.uint8) == 0x5C)
        last = np.flatnonzero(np.diff(bs, append=bs[-1] + 2) != 1)  # the last backslash of each run
        ends = bs[last]
        lengths = np.diff(last, prepend=-1)
        q = at[quote] - 1
        i = np.minimum(np.searchsorted(ends, q), len(ends) - 1)
        escaped = (ends[i] == q) & (lengths[i] % 2 == 1)
        quote[np.flatnonzero(quote)[escaped]] = False
    in_string = (np.cumsum(quote) - quote) % 2 == 1
    step = (kind == _OPEN).astype(np.int32) - (kind == _CLOSE)
    step[in_string | quote] = 0
    return int(np.cumsum(step).max()) if len(step) else 0


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object without repeated keys: parsers disagree on which copy wins, so a batch
    such as ``{"tenant": "a", "tenant": "b"}`` means different things to different readers."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for dup, _ in pairs:
            if dup in seen:
                break
            seen.add(dup)
        raise DecodeError("malformed_json", f"JSON object has the key {dup[:64]!r} more than once; "
                                            "send each field once")
    return doc


def _load_json(data: bytes, limits: GatewayLimits) -> Any:
    """The JSON document in ``data``: strict UTF-8 (a BOM allowed), at most
    ``limits.max_json_depth`` deep, no repeated keys; DecodeError ``malformed_json`` otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError("malformed_json", f"not valid UTF-8 JSON: {exc}") from None
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise DecodeError("malformed_json", f"JSON nested {depth} deep; the limit is {limits.max_json_depth} "
                                            "(a gateway batch is an object with an array of flat readings)")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # includes json.JSONDecodeError and integers over 4300 digits
        raise DecodeError("malformed_json", f"not valid UTF-8 JSON: {exc}") from None


def _check_unicode(batch: dict[str, Any]) -> None:
    """``"\\ud800"`` escapes decode to lone surrogates, which no Avro record (or UTF-8) carries."""
    where = [(key, batch[key]) for key in _STR_FIELDS]
    for i, r in enumerate(batch["readings"]):
        where.append((f"readings[{i}].tag", r["tag"]))
        if r["unit"] is not None:
            where.append((f"readings[{i}].unit", r["unit"]))
    for path, text in where:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DecodeError("malformed_json", f"{path}: string with a lone surrogate escape: {exc.reason} "
                                                f"at position {exc.start}") from None


def parse_json_batch(data: bytes, limits: GatewayLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse a JSON gateway batch into the dict ``AvroCodec().decode(..., "gateway_batch")``
    returns, or raise DecodeError saying which field is wrong."""
    doc = _load_json(data, limits)
    if type(doc) is not dict:
        raise _wrong("batch", "a JSON object", doc)
    batch: dict[str, Any] = {}
    for key in _STR_FIELDS:
        if key not in doc:
            raise _missing(key)
        value = doc[key]
        if type(value) is not str:
            raise _wrong(key, "a string", value)
        batch[key] = value
    if "sent_at" not in doc:
        raise _missing("sent_at")
    batch["sent_at"] = parse_timestamp(doc["sent_at"], "sent_at")
    sequence = doc.get("sequence")
    if sequence is not None and (type(sequence) is not int or not _LONG_MIN <= sequence <= _LONG_MAX):
        raise _wrong("sequence", "a 64-bit integer or null", sequence)
    batch["sequence"] = sequence
    if "readings" not in doc:
        raise _missing("readings")
    items = doc["readings"]
    if type(items) is not list:
        raise _wrong("readings", "an array", items)
    batch["readings"] = _readings(items, limits.max_readings)
    if _SURROGATE_ESCAPE.search(data):
        _check_unicode(batch)
    return batch


def _check_text(path: str, text: str, limits: GatewayLimits) -> None:
    if len(text) > limits.max_id_chars:
        raise DecodeError("invalid_id", f"{path} is {len(text)} characters long, {text[:32]!r}...; "
                                        f"the limit is {limits.max_id_chars}")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise DecodeError("invalid_id", f"{path} {text[:limits.max_id_chars]!r} contains the control or "
                                        f"format character U+{ord(bad.group()):04X} at {bad.start()}; "
                                        "ids, tags and units are printable text")


def check_batch(cols: GatewayColumns, limits: GatewayLimits = DEFAULT_LIMITS) -> None:
    """The bounds every decoded batch must keep, whichever format it came in: the number of
    readings, id/tag/unit length and characters, and ``quality`` within the schema's 32-bit
    int (fastavro reads any varint there; only its fallback can give one out of range)."""
    _check_count(len(cols), limits)
    for key in _STR_FIELDS:
        _check_text(key, getattr(cols, key), limits)
    for what, texts in (("tag", cols.tags), ("unit", cols.units)):
        distinct = [t for t in set(texts) if t is not None]  # a batch repeats a few: check each once
        too_long = bool(distinct) and max(map(len, distinct)) > limits.max_id_chars
        if too_long or _FORBIDDEN.search("".join(distinct)):
            for i, t in enumerate(texts):
                if t is not None:
                    _check_text(f"readings[{i}].{what}", t, limits)
    quality = cols.quality
    if cols.via_fastavro and quality and not _INT_MIN <= min(quality) <= max(quality) <= _INT_MAX:
        i = next(i for i, q in enumerate(quality) if not _INT_MIN <= q <= _INT_MAX)
        raise DecodeError("invalid_batch", f"readings[{i}].quality: {quality[i]} does not fit the "
                                           "schema's 32-bit int")


def check_key(cols: GatewayColumns, key: bytes | None) -> None:
    """The message key must be the batch's ``tenant/site/machine``: Kafka partitions by key, so
    a wrong key puts the machine's readings in another partition (out of order with the rest,
    judged against another copy's state), and a key naming another tenant is a spoofing try."""
    want = machine_key(cols.tenant, cols.site, cols.machine)
    if key != want:
        got = "no key" if key is None else f"the key {key[:200]!r}"
        raise DecodeError("key_mismatch", f"the message has {got}, but its batch is from "
                                          f"{want.decode()!r}; key every batch tenant/site/machine")


def content_type_of(headers: Headers) -> str | None:
    """The media type of the ``content-type`` header (parameters such as charset dropped)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == HEADER_CONTENT_TYPE and value is not None:
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            return text.split(";", 1)[0].strip().lower()
    return None


def _content_type(value: bytes | None, headers: Headers, limits: GatewayLimits) -> str:
    """The checks every gateway message passes first; returns the (sniffed) content type."""
    if not value:
        raise DecodeError("empty_message", "the message has no value; a gateway batch is required")
    if len(value) > limits.max_bytes:
        raise DecodeError("message_too_large",
                          f"{len(value)} bytes; the limit is {limits.max_bytes}: send smaller batches "
                          "(PLANTSTREAM_MAX_MESSAGE_BYTES)")
    ctype = content_type_of(headers)
    if ctype is None:
        if value[:2] == MAGIC:
            ctype = CONTENT_TYPE_AVRO
        elif value.lstrip(_WHITESPACE)[:1] == b"{":
            ctype = CONTENT_TYPE_JSON
        else:
            raise DecodeError("unsupported_format",
                              f"no content-type header and the value starts with {value[:4]!r}, "
                              "neither Avro (C3 01) nor a JSON object")
    if ctype not in (CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON):
        raise DecodeError("unsupported_format",
                          f"content-type {ctype!r} is not {CONTENT_TYPE_AVRO!r} or {CONTENT_TYPE_JSON!r}")
    return ctype


def _check_count(n: int, limits: GatewayLimits) -> None:
    if n > limits.max_readings:
        raise DecodeError("batch_too_large",
                          f"{n} readings in one batch; the limit is {limits.max_readings}: split the batch "
                          "(PLANTSTREAM_MAX_BATCH_READINGS)")


def decode_gateway_columns(value: bytes | None, headers: Headers = None,
                           limits: GatewayLimits = DEFAULT_LIMITS) -> GatewayColumns:
    """Like :func:`decode_gateway_message`, as columns (the ingest hot path: Avro batches are
    decoded without building a dict per reading; see :mod:`plantstream.gateway.columns`)."""
    ctype = _content_type(value, headers, limits)
    assert value is not None
    if ctype == CONTENT_TYPE_AVRO:
        cols = decode_avro_columns(value)
    else:
        cols = GatewayColumns.from_dict(parse_json_batch(value, limits))
    check_batch(cols, limits)
    return cols


def decode_gateway_message(value: bytes | None, headers: Headers = None,
                           limits: GatewayLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode one gateway message (Avro or JSON) into a ``gateway_batch`` dict, enforcing the
    limits; raise DecodeError with the dead-letter reason otherwise. The same checks as
    :func:`decode_gateway_columns` (it is that, as a dict)."""
    return decode_gateway_columns(value, headers, limits).to_dict()


def encode_json_batch(batch: dict[str, Any]) -> bytes:
    """Compact JSON with integer-microsecond timestamps (what the simulator's JSON gateways send)."""
    return json.dumps(batch, separators=(",", ":")).encode()


def encode_gateway_batch(batch: dict[str, Any], fmt: str = "avro") -> tuple[bytes, list[tuple[str, bytes]]]:
    """The message value and headers a gateway produces for ``batch`` (Kafka key: machine_key)."""
    if fmt == "avro":
        value, ctype = _avro().encode(SCHEMA, batch), CONTENT_TYPE_AVRO
    elif fmt == "json":
        value, ctype = encode_json_batch(batch), CONTENT_TYPE_JSON
    else:
        raise GatewayError(f"unknown gateway format {fmt!r}: use 'avro' or 'json'")
    return value, [(HEADER_CONTENT_TYPE, ctype.encode()), (HEADER_GATEWAY, batch["gateway"].encode())]
