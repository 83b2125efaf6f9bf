"""The gateway contract: what a gateway may put on the ``gateway.readings`` topic.

One Kafka message = one batch of readings from one machine, keyed ``tenant/site/machine``.
The value is either Avro (schema ``gateway_batch``, single-object encoding) or the
equivalent JSON object, told apart by the ``content-type`` header (sniffed when absent).

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
malformed_json, invalid_batch, bad_timestamp, batch_too_large, and the Avro codec's
not_avro, unknown_schema, wrong_schema, malformed_avro.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.gateway.columns import GatewayColumns, decode_avro_columns
from plantstream.gateway.errors import GatewayError
from plantstream.settings import Settings

SCHEMA = "gateway_batch"
HEADER_CONTENT_TYPE = "content-type"
HEADER_GATEWAY = "ps-gateway"
DEFAULT_QUALITY = 192
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STR_FIELDS = ("batch_id", "tenant", "site", "machine", "gateway")
_WHITESPACE = b" \t\r\n"

Headers = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


@dataclass(frozen=True)
class GatewayLimits:
    """What the platform accepts from one gateway message; larger ones are dead-lettered."""

    max_readings: int = 5000
    max_bytes: int = 1_048_576

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


def parse_json_batch(data: bytes, limits: GatewayLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse a JSON gateway batch into the dict ``AvroCodec().decode(..., "gateway_batch")``
    returns, or raise DecodeError saying which field is wrong."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("malformed_json", f"not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("malformed_json", "JSON nested too deeply (a gateway batch is an object "
                                            "with an array of flat readings)") from None
    try:  # "\ud800" escapes decode to lone surrogates, which no Avro record can carry
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DecodeError("malformed_json", f"string with a lone surrogate escape: {exc.reason} "
                                            f"at position {exc.start}") from None
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
    return batch


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
        _check_count(len(cols), limits)
        return cols
    return GatewayColumns.from_dict(parse_json_batch(value, limits))


def decode_gateway_message(value: bytes | None, headers: Headers = None,
                           limits: GatewayLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Decode one gateway message (Avro or JSON) into a ``gateway_batch`` dict, enforcing the
    limits; raise DecodeError with the dead-letter reason otherwise."""
    ctype = _content_type(value, headers, limits)
    assert value is not None
    if ctype == CONTENT_TYPE_AVRO:
        batch = _avro().decode(value, SCHEMA)
        _check_count(len(batch["readings"]), limits)
        return batch
    return parse_json_batch(value, limits)


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
