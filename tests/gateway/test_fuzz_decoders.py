"""Property-based fuzzing (hypothesis) of every decoder that reads bytes from outside the
platform: the gateway Avro column decoder (against fastavro), the JSON contract, the
reading-batch decoder, and ingest's header and key checks. The property is always the same:
any input gives a decoded batch or a DecodeError with a reason code, never another exception;
where two decoders read the same bytes, they agree. Pure logic, no Kafka.

One known gap, on purpose: the reading-batch decoder (validation's hot path) carries reading
ids, sensors and units as byte spans and does not check their UTF-8 (a vectorised check,
tried, made it 25 % slower on ASCII text and 5x slower on other text); ingest, their only
writer, encodes valid text, and archival's fastavro read stores any other record as an
archival dead letter.

Reproducible: every test runs with ``derandomize=True`` and no example database (examples
derived from the test itself, not from a random seed or earlier runs), so CI sees the same
inputs each run; raise ``max_examples`` locally to search further.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from readings_support import MACHINE, SITE, TENANT, assets
from test_gateway_columns import bits

from ingest.dedup import SeenBatches
from ingest.normalize import Normalizer
from plantstream.assets import AssetRegistry
from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.deadletter import DeadLetters
from plantstream.deadletter import Source as DLSource
from plantstream.errors import DecodeError
from plantstream.gateway.columns import GatewayColumns, decode_avro_columns
from plantstream.gateway.contract import (
    DEFAULT_LIMITS,
    check_key,
    content_type_of,
    decode_gateway_columns,
    decode_gateway_message,
    encode_gateway_batch,
    encode_json_batch,
    json_depth,
)
from plantstream.readingbatch import (
    decode_readings,
    encode_readings,
    long_bytes,
    quality_bytes,
    read_long,
    string_bytes,
)
from plantstream.settings import Settings
from plantstream.topics import machine_key

CODEC = AvroCodec()
JSON_HEADERS = [("content-type", CONTENT_TYPE_JSON.encode())]
T0 = 1_777_636_800_000_000
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)
# varints fastavro reads without complaint: 10 bytes beyond 64 bits, 11 bytes, zero padded, 2**40
ODD_VARINTS = [b"\xff" * 9 + b"\x7f", b"\xfe" * 9 + b"\x03", b"\x80" * 10 + b"\x01", b"\x80\x00",
               b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02", bytes([0x80] * 5 + [0x10])]
FUZZ = fuzz_settings(derandomize=True, deadline=None, database=None, max_examples=100,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    """("ok", the record by bits) or ("error", the DecodeError reason); anything else raises."""
    try:
        got = decode(data)
    except DecodeError as exc:
        return "error", exc.reason
    return "ok", bits(got.to_dict() if isinstance(got, GatewayColumns) else got)


# -- strategies -----------------------------------------------------------------------------

ids = st.text(max_size=12)  # any Unicode text except surrogates (hypothesis' default alphabet)
printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
timestamps = st.one_of(INT64, st.integers(T0 - 10**9, T0 + 10**9))  # every width, and 8-byte ones
doubles = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def gateway_batches(draw: st.DrawFn, text: st.SearchStrategy[str] = ids) -> dict[str, Any]:
    """A valid gateway_batch record; tags cycle through a few sensors (the decoder's periodic
    fast path) or are drawn freely."""
    tags = draw(st.lists(text, min_size=1, max_size=4))
    units = draw(st.lists(st.none() | text, min_size=len(tags), max_size=len(tags)))
    quality = draw(st.lists(st.sampled_from([192, 0, 64, 1]) | INT32, min_size=len(tags), max_size=len(tags)))
    n = draw(st.integers(0, 40))
    periodic = draw(st.booleans())
    readings = []
    for i in range(n):
        k = i % len(tags) if periodic else draw(st.integers(0, len(tags) - 1))
        readings.append({"tag": tags[k], "ts": draw(timestamps), "value": draw(doubles), "unit": units[k],
                         "quality": quality[k]})
    return {"batch_id": draw(text), "tenant": draw(text), "site": draw(text), "machine": draw(text),
            "gateway": draw(text), "sent_at": draw(INT64), "sequence": draw(st.none() | INT64),
            "readings": readings}


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "varint", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[at] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0xC3]))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "varint":  # an odd but decodable varint in place of a byte: past 64 bits, overlong
            out[at:at + 1] = draw(st.sampled_from(ODD_VARINTS))
        elif op == "delete" and out:
            del out[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del out[at:]
    return bytes(out)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | doubles | st.text(max_size=8)
               | st.sampled_from(["\ud800", "2026-05-01T12:00:00Z", "9999-12-31T23:59:59Z", "1.5",
                                 "\x1b[31m"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=max_leaves)


def header_lists() -> st.SearchStrategy[list[tuple[str, bytes | None]]]:
    names = st.sampled_from(["content-type", "Content-Type", "ps-gateway"]) | st.text(max_size=8)
    values = st.none() | st.binary(max_size=40) | st.sampled_from(
        [CONTENT_TYPE_AVRO.encode(), CONTENT_TYPE_JSON.encode(), b"application/json; charset=utf-8",
         b"text/csv", b"\xff\xfe", b"APPLICATION/JSON"])
    return st.lists(st.tuples(names, values), max_size=4)


# -- the gateway Avro column decoder against fastavro --------------------------------------

@FUZZ
@given(gateway_batches(), st.sampled_from([None, 1]))
def test_column_decoder_agrees_with_fastavro_on_valid_batches(batch: dict[str, Any],
                                                              version: int | None) -> None:
    if version == 1:
        batch = {k: v for k, v in batch.items() if k != "sequence"}
    data = CODEC.encode("gateway_batch", batch, version=version)
    assert outcome(decode_avro_columns, data) == outcome(lambda d: CODEC.decode(d, "gateway_batch"), data)
    assert outcome(decode_avro_columns, data)[0] == "ok"


@FUZZ
@given(st.data())
def test_mutated_avro_gives_what_fastavro_gives_never_a_crash(data: st.DataObject) -> None:
    valid = CODEC.encode("gateway_batch", data.draw(gateway_batches()))
    mutated = data.draw(mutations(valid))
    assert outcome(decode_avro_columns, mutated) == outcome(lambda d: CODEC.decode(d, "gateway_batch"),
                                                            mutated)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_an_avro_header_decode_or_raise_decode_error(body: bytes) -> None:
    head = CODEC.encode("gateway_batch", {"batch_id": "", "tenant": "", "site": "", "machine": "",
                                          "gateway": "", "sent_at": 0, "sequence": None, "readings": []})[:10]
    data = head + body
    assert outcome(decode_avro_columns, data) == outcome(lambda d: CODEC.decode(d, "gateway_batch"), data)


# -- the gateway contract: any value and headers -> a batch within the bounds, or DecodeError --

def contract_outcome(value: bytes | None, headers: Any) -> tuple[str, Any]:
    """Both contract entry points agree; an accepted batch keeps every bound."""
    cols = outcome(lambda v: decode_gateway_columns(v, headers), value)  # type: ignore[arg-type]
    assert cols == outcome(lambda v: decode_gateway_message(v, headers), value)  # type: ignore[arg-type]
    if cols[0] == "ok":
        batch = decode_gateway_columns(value, headers)
        texts = [batch.batch_id, batch.tenant, batch.site, batch.machine, batch.gateway, *batch.tags,
                 *(u for u in batch.units if u is not None)]
        assert all(len(t) <= DEFAULT_LIMITS.max_id_chars for t in texts)
        assert all(t.isprintable() or not t for t in texts)
        "".join(texts).encode("utf-8")  # no lone surrogate reaches the encoders
        assert len(batch) <= DEFAULT_LIMITS.max_readings
        assert batch.ts.dtype == np.int64 and all(-(2**31) <= q < 2**31 for q in batch.quality)
    return cols


@FUZZ
@given(st.none() | st.binary(max_size=300), st.none() | header_lists())
def test_any_value_and_headers_give_a_batch_or_a_decode_error(value: bytes | None, headers: Any) -> None:
    contract_outcome(value, headers)


@FUZZ
@given(st.data(), st.sampled_from(["avro", "json"]))
def test_mutated_gateway_messages_give_a_batch_or_a_decode_error(data: st.DataObject, fmt: str) -> None:
    batch = data.draw(gateway_batches(printable))
    value = CODEC.encode("gateway_batch", batch) if fmt == "avro" else encode_json_batch(batch)
    ctype = CONTENT_TYPE_AVRO if fmt == "avro" else CONTENT_TYPE_JSON
    assert contract_outcome(value, [("content-type", ctype.encode())])[0] == "ok"
    contract_outcome(data.draw(mutations(value)), data.draw(st.none() | header_lists()))


@FUZZ
@given(st.data())
def test_json_documents_with_any_field_values_give_a_batch_or_a_decode_error(data: st.DataObject) -> None:
    doc: dict[str, Any] = data.draw(gateway_batches(printable))
    doc["readings"] = [dict(r) for r in doc["readings"]]
    for _ in range(data.draw(st.integers(1, 3))):
        readings = doc.get("readings")
        dicts = [r for r in readings if isinstance(r, dict)] if isinstance(readings, list) else []
        target = doc if not dicts or data.draw(st.booleans()) else data.draw(st.sampled_from(dicts))
        key = data.draw(st.sampled_from([*target, "extra"]))
        if data.draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = data.draw(json_values())
    text = json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")
    contract_outcome(text, [("content-type", b"application/json")])


@FUZZ
@given(st.integers(1, 300), st.sampled_from(["[", "{\"a\":", "[{\"k\":"]))
def test_json_nesting_is_bounded_before_the_parser(depth: int, opener: str) -> None:
    text = (opener * depth + "1" + {"[": "]", "{\"a\":": "}", "[{\"k\":": "}]"}[opener] * depth).encode()
    got = contract_outcome(b'{"batch_id": "b", "x": ' + text + b"}", [("content-type", b"application/json")])
    nested = depth * (2 if opener == "[{\"k\":" else 1) + 1
    if nested > DEFAULT_LIMITS.max_json_depth:
        assert got == ("error", "malformed_json")
    else:  # within the bound: the parser ran and found the missing fields
        assert got == ("error", "invalid_batch")


@FUZZ
@given(st.integers(0, 3000), st.text('[]{}"\\ ,:1a', max_size=200), st.text('"\\[{ ', max_size=8))
def test_bracket_soup_never_reaches_the_parsers_recursion(deep: int, tail: str, head: str) -> None:
    """Openers deep enough for the parser's recursion limit, behind quotes and backslashes that
    might fool the depth scan: a DecodeError (or a batch), never a RecursionError."""
    text = ('{"batch_id": "' + head + '", "x": ' + "[" * deep + tail).encode()
    contract_outcome(text, JSON_HEADERS)
    contract_outcome(b"[" * deep + b'"' + head.encode() + b'"' + b"]" * deep, JSON_HEADERS)


@FUZZ
@given(json_values(max_leaves=20), st.booleans())
def test_json_depth_matches_the_parsed_document(doc: Any, ascii_only: bool) -> None:
    def depth(x: Any) -> int:
        if isinstance(x, dict | list):
            return 1 + max((depth(v) for v in (x.values() if isinstance(x, dict) else x)), default=0)
        return 0
    text = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert json_depth(text) == depth(doc)


# -- headers and keys ----------------------------------------------------------------------

@FUZZ
@given(header_lists())
def test_content_type_of_any_headers_is_text_or_none(headers: list[tuple[str, bytes | None]]) -> None:
    got = content_type_of(headers)
    assert got is None or (isinstance(got, str) and got == got.strip().lower())


@FUZZ
@given(gateway_batches(printable), st.none() | st.binary(max_size=40))
def test_a_key_other_than_the_batchs_machine_is_a_key_mismatch(batch: dict[str, Any],
                                                               key: bytes | None) -> None:
    cols = GatewayColumns.from_dict(batch)
    want = machine_key(batch["tenant"], batch["site"], batch["machine"])
    check_key(cols, want)
    if key != want:
        try:
            check_key(cols, key)
        except DecodeError as exc:
            assert exc.reason == "key_mismatch"
            exc.detail.encode("utf-8")  # a dead letter's detail is always encodable
        else:
            raise AssertionError(f"key {key!r} accepted for {want!r}")


_normalizer: list[Normalizer] = []


def normalizer() -> Normalizer:
    """Ingest's normalizer with the test registry (press-01: tags T1, P1, V1); no Kafka."""
    if not _normalizer:
        s = replace(Settings.from_env(), home=Path(tempfile.mkdtemp(prefix="fuzz-ingest-")))
        _normalizer.append(Normalizer(AssetRegistry(assets()), SeenBatches(s), DeadLetters(s, "ingest"),
                                      "normalized", DEFAULT_LIMITS))
    return _normalizer[0]


@st.composite
def ingest_messages(draw: st.DrawFn) -> tuple[bytes | None, Any, bytes | None]:
    """A press-01 batch (Avro or JSON, maybe mutated) with any headers and any key."""
    b = draw(gateway_batches(st.sampled_from(["T1", "P1", "V1", "X"])))
    b.update(tenant=TENANT, site=SITE, machine=MACHINE, batch_id=draw(printable))
    value, headers = encode_gateway_batch(b, draw(st.sampled_from(["avro", "json"])))
    if draw(st.booleans()):
        value = draw(mutations(value))
    key = draw(st.sampled_from([machine_key(TENANT, SITE, MACHINE), None]) | st.binary(max_size=30))
    return value, draw(st.sampled_from([headers, None]) | header_lists()), key


@FUZZ
@given(ingest_messages(), st.integers(0, 3))
def test_ingest_turns_any_message_key_and_headers_into_outputs(msg: tuple, partition: int) -> None:
    """Whatever the value, headers and key: normalized batches (only under the batch's own key,
    readable by validation) and dead letters with a reason; nothing raises."""
    value, headers, key = msg
    outs = normalizer().normalize(DLSource("gw", partition, 0, value, headers), T0, key=key)
    reasons = [CODEC.decode(o.value, "dead_letter")["reason"] for o in outs if o.topic != "normalized"]
    assert "processing_error" not in reasons
    if not outs:  # only a valid batch without readings gives nothing to account for
        assert len(decode_gateway_columns(value, headers)) == 0 and key == machine_key(TENANT, SITE, MACHINE)
    if any(o.topic == "normalized" for o in outs):
        assert key == machine_key(TENANT, SITE, MACHINE)
        decode_readings(next(o.value for o in outs if o.topic == "normalized"))  # validation can read it


# -- the reading-batch decoder (validation's input) ------------------------------------------

@st.composite
def reading_batches(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 12))
    sensors = draw(st.lists(ids, min_size=n, max_size=n))
    tails = [string_bytes(draw(ids)) + quality_bytes(draw(INT32)) for _ in range(n)]
    ts = draw(st.lists(timestamps, min_size=n, max_size=n))
    values = draw(st.lists(doubles, min_size=n, max_size=n))
    return encode_readings(draw(ids), draw(ids), draw(ids), draw(ids), draw(ids), draw(INT64),
                           list(range(n)), [string_bytes(s) for s in sensors], ts, values, tails,
                           sent_at=draw(st.none() | INT64))


def view_dict(data: bytes) -> dict[str, Any]:
    """What decode_readings read. Reading ids and sensors are compared as bytes: the decoder
    carries them (and units) as byte spans without decoding UTF-8 (see the next test)."""
    v = decode_readings(data)
    return {"batch_id": v.batch_id, "tenant": v.tenant, "site": v.site, "machine": v.machine,
            "gateway": v.gateway, "ingest_time": v.ingest_time, "sent_at": v.sent_at,
            "readings": [{"reading_id": _reading_id(v.reading_bytes(i)), "sensor": v.sensors[i],
                          "ts": int(v.ts[i]), "value": float(v.values[i]), "quality": v.quality[i]}
                         for i in range(len(v))]}


def _reading_id(reading: bytes) -> bytes:
    n, p = read_long(reading, 0)
    return reading[p:p + n]


def fastavro_dict(data: bytes) -> dict[str, Any]:
    rec = CODEC.decode(data, "reading_batch")
    for r in rec["readings"]:
        del r["unit"]
        r["reading_id"], r["sensor"] = r["reading_id"].encode(), r["sensor"].encode()
    return rec


def utf8_error(decode: Any, data: bytes) -> bool:
    try:
        decode(data)
    except DecodeError as exc:
        return isinstance(exc.__cause__, UnicodeDecodeError)
    return False


@FUZZ
@given(reading_batches())
def test_reading_batch_decoder_agrees_with_fastavro(data: bytes) -> None:
    assert outcome(view_dict, data) == outcome(fastavro_dict, data)


@FUZZ
@given(st.data())
def test_mutated_reading_batches_decode_or_raise_decode_error(data: st.DataObject) -> None:
    mutated = data.draw(mutations(data.draw(reading_batches())))
    got = outcome(view_dict, mutated)
    if got[0] == "ok":  # what it accepts, fastavro reads the same (it is stricter: 64-bit varints, int32)
        # ... except reading ids, sensors and units with invalid UTF-8, kept as bytes (checking
        # them costs a decode per reading); archival's fastavro read dead-letters such a record.
        assert got == outcome(fastavro_dict, mutated) or utf8_error(fastavro_dict, mutated)
        view = decode_readings(mutated)
        assert view.subset(list(range(len(view)))) == mutated


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_reading_batch_or_a_decode_error(body: bytes) -> None:
    outcome(view_dict, body)
    outcome(view_dict, MAGIC + body)
    outcome(view_dict, encode_readings("b", "t", "s", "m", "g", 1, [], [], [], [], [])[:10] + body)


@FUZZ
@given(reading_batches(), st.sampled_from(ODD_VARINTS), st.integers(0, 11), st.booleans())
def test_odd_varints_in_a_reading_are_read_exactly_or_rejected(data: bytes, varint: bytes, i: int,
                                                               in_quality: bool) -> None:
    """Each 64-bit (ts) or 32-bit (quality) field of a reading replaced by a varint fastavro
    reads without complaint (wrapping it): the decoder gives exactly fastavro's record, or a
    DecodeError when the number does not fit the field, never an OverflowError."""
    view = decode_readings(data)
    if not len(view):
        return
    i %= len(view)
    p = view.starts[i]
    for _ in range(2):  # reading id, sensor
        n, p = read_long(data, p)
        p += n
    if in_quality:
        p = view.ends[i] - len(quality_bytes(view.quality[i]))
    end = p + len(quality_bytes(view.quality[i]) if in_quality else long_bytes(int(view.ts[i])))
    odd = data[:p] + varint + data[end:]
    got = outcome(view_dict, odd)  # a DecodeError (beyond 64 bits, beyond int32) or exactly fastavro's
    assert got[0] == "error" or got == outcome(fastavro_dict, odd)
