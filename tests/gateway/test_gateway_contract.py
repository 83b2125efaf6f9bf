"""The gateway contract: JSON and Avro batches decode to the same dict; every bad input is
rejected with its exact dead-letter reason and a detail that names the problem."""

from __future__ import annotations

import json
import struct
from dataclasses import replace

import pytest

from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.gateway.contract import (
    GatewayLimits,
    decode_gateway_message,
    encode_gateway_batch,
    parse_json_batch,
)
from plantstream.gateway.errors import GatewayError
from plantstream.settings import Settings

T0 = 1_777_636_800_000_000  # 2026-05-01T12:00:00Z


def batch(n: int = 3) -> dict:
    return {
        "batch_id": "b-1", "tenant": "demo", "site": "plant-1", "machine": "pump-01", "gateway": "gw-1",
        "sent_at": T0 + 500_000, "sequence": 4,
        "readings": [{"tag": f"P01.T{i}", "ts": T0 + i, "value": 1.5 * i, "unit": "degC" if i % 2 else None,
                      "quality": 192} for i in range(n)],
    }


def jbytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_avro_and_json_decode_to_the_same_dict() -> None:
    b = batch()
    avro, avro_headers = encode_gateway_batch(b, "avro")
    js, js_headers = encode_gateway_batch(b, "json")
    assert dict(avro_headers) == {"content-type": CONTENT_TYPE_AVRO.encode(), "ps-gateway": b"gw-1"}
    assert dict(js_headers)["content-type"] == CONTENT_TYPE_JSON.encode()
    assert decode_gateway_message(avro, avro_headers) == b
    assert decode_gateway_message(js, js_headers) == b
    assert AvroCodec().decode(avro, "gateway_batch") == parse_json_batch(js)


def test_json_optional_fields_default_like_avro_and_rfc3339_times_are_accepted() -> None:
    doc = {"batch_id": "b", "tenant": "t", "site": "s", "machine": "m", "gateway": "g",
           "sent_at": "2026-05-01T14:00:00.5+02:00",
           "readings": [{"tag": "A", "ts": "2026-05-01T12:00:00Z", "value": 3},
                        {"tag": "B", "ts": "2026-05-01T12:00:00.000001Z", "value": -0.25, "quality": 0}]}
    got = parse_json_batch(jbytes(doc))
    assert got["sent_at"] == T0 + 500_000
    assert got["sequence"] is None
    assert got["readings"] == [
        {"tag": "A", "ts": T0, "value": 3.0, "unit": None, "quality": 192},
        {"tag": "B", "ts": T0 + 1, "value": -0.25, "unit": None, "quality": 0},
    ]
    assert type(got["readings"][0]["value"]) is float


@pytest.mark.parametrize("headers", [None, [], {"content-type": "application/json; charset=utf-8"},
                                     [("Content-Type", b"application/json")]])
def test_json_is_recognised_by_header_or_sniffed(headers: object) -> None:
    assert decode_gateway_message(b"  \n" + jbytes(batch()), headers)["machine"] == "pump-01"


def test_avro_is_sniffed_without_header() -> None:
    value, _ = encode_gateway_batch(batch(), "avro")
    assert decode_gateway_message(value, None) == batch()


def test_old_avro_writer_v1_is_accepted() -> None:
    old = batch()
    del old["sequence"]
    value = AvroCodec().encode("gateway_batch", old, version=1)
    assert decode_gateway_message(value, [("content-type", CONTENT_TYPE_AVRO.encode())])["sequence"] is None


def _avro(b: dict | None = None) -> bytes:
    return encode_gateway_batch(b or batch(), "avro")[0]


def _with(**changes: object) -> bytes:
    doc = batch()
    doc.update(changes)
    return jbytes(doc)


def _reading(i: int, **changes: object) -> bytes:
    doc = batch()
    doc["readings"][i].update(changes)
    return jbytes(doc)


def _without(key: str, reading: int | None = None) -> bytes:
    doc = batch()
    del (doc if reading is None else doc["readings"][reading])[key]
    return jbytes(doc)


_asset = {"tenant": "t", "site": "s", "machine": "m", "machine_type": "pump", "description": None,
          "sensors": [], "updated_at": 0}
JSON_H = [("content-type", b"application/json")]
AVRO_H = [("content-type", CONTENT_TYPE_AVRO.encode())]
NUM = "expected a number"
SMALL = GatewayLimits(max_readings=10, max_bytes=4096)
BAD = [
    ("empty value", b"", None, "empty_message", "no value"),
    ("no value (tombstone)", None, None, "empty_message", "no value"),
    ("malformed JSON", b'{"batch_id": "b", ', None, "malformed_json", "not valid UTF-8 JSON"),
    ("JSON not UTF-8", b'{"batch_id": "\xff\xfe"}', None, "malformed_json", "UTF-8"),
    ("JSON header, Avro body", _avro(), JSON_H, "malformed_json", "JSON"),
    ("truncated Avro", _avro()[:-7], None, "malformed_avro", "cannot be decoded"),
    ("Avro with trailing bytes", _avro() + b"\x00", None, "malformed_avro", "trailing"),
    ("unknown schema fingerprint", MAGIC + struct.pack("<Q", 0x1234) + _avro()[10:], None, "unknown_schema",
     "0000000000001234"),
    ("Avro of another schema", AvroCodec().encode("asset", _asset), None, "wrong_schema", "asset"),
    ("Avro header, JSON body", jbytes(batch()), AVRO_H, "not_avro", "C3 01"),
    ("neither format", b"tag,ts,value\n", None, "unsupported_format", "neither Avro"),
    ("unknown content type", jbytes(batch()), [("content-type", b"text/csv")], "unsupported_format",
     "text/csv"),
    ("oversized JSON batch", jbytes(batch(11)), None, "batch_too_large", "11 readings"),
    ("oversized Avro batch", _avro(batch(11)), None, "batch_too_large", "11 readings"),
    ("oversized message", jbytes(batch(10)) + b" " * 4096, None, "message_too_large", "limit is 4096"),
    ("top level is an array", b"[1, 2]", JSON_H, "invalid_batch", "batch: expected a JSON object"),
    ("missing machine", _without("machine"), None, "invalid_batch", "machine: required field is missing"),
    ("missing sent_at", _without("sent_at"), None, "invalid_batch", "sent_at: required"),
    ("missing readings", _without("readings"), None, "invalid_batch", "readings: required"),
    ("missing reading value", _without("value", 1), None, "invalid_batch", "readings[1].value: required"),
    ("missing reading ts", _without("ts", 2), None, "invalid_batch", "readings[2].ts: required"),
    ("tenant is a number", _with(tenant=5), None, "invalid_batch", "tenant: expected a string, got int"),
    ("readings is an object", _with(readings={}), None, "invalid_batch", "readings: expected an array"),
    ("reading is a list", _with(readings=[[1, 2]]), None, "invalid_batch", "readings[0]: expected an object"),
    ("value is a string", _reading(0, value="1.5"), None, "invalid_batch", f"readings[0].value: {NUM}"),
    ("value is a boolean", _reading(1, value=True), None, "invalid_batch", f"readings[1].value: {NUM}"),
    ("value overflows a double", _reading(0, value=10**400), None, "invalid_batch", "too large"),
    ("tag is null", _reading(0, tag=None), None, "invalid_batch", "readings[0].tag: expected a string"),
    ("unit is a number", _reading(2, unit=1), None, "invalid_batch", "readings[2].unit"),
    ("quality is text", _reading(0, quality="good"), None, "invalid_batch", "readings[0].quality"),
    ("sequence is text", _with(sequence="7"), None, "invalid_batch", "sequence"),
    ("ts is a float", _reading(0, ts=1.7e15), None, "invalid_batch", "readings[0].ts: expected integer"),
    ("ts is not a time", _reading(1, ts="yesterday"), None, "bad_timestamp", "readings[1].ts: 'yesterday'"),
    ("ts has no offset", _reading(0, ts="2026-05-01T12:00:00"), None, "bad_timestamp", "no UTC offset"),
    ("ts beyond 64 bits", _reading(0, ts=2**63), None, "bad_timestamp", "64 bits"),
    ("sent_at is not a time", _with(sent_at="2026-13-45T99:00:00Z"), None, "bad_timestamp", "sent_at"),
]


@pytest.mark.parametrize(("value", "headers", "reason", "detail"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input_is_rejected_with_its_reason(value: bytes, headers: object, reason: str,
                                               detail: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_gateway_message(value, headers, SMALL)
    assert info.value.reason == reason
    assert detail in info.value.detail


def test_limits_come_from_settings() -> None:
    s = replace(Settings.from_env(), max_batch_readings=2, max_message_bytes=10_000)
    limits = GatewayLimits.from_settings(s)
    assert limits == GatewayLimits(max_readings=2, max_bytes=10_000)
    with pytest.raises(DecodeError) as info:
        decode_gateway_message(_avro(batch(3)), None, limits)
    assert info.value.reason == "batch_too_large"
    assert decode_gateway_message(_avro(batch(2)), None, limits)["readings"][1]["tag"] == "P01.T1"


def test_nan_passes_the_contract_for_validation_to_judge() -> None:
    got = decode_gateway_message(b'{"batch_id":"b","tenant":"t","site":"s","machine":"m","gateway":"g",'
                                 b'"sent_at":1,"readings":[{"tag":"A","ts":1,"value":NaN}]}')
    assert got["readings"][0]["value"] != got["readings"][0]["value"]


def test_unknown_format_for_encoding_is_a_clear_error() -> None:
    with pytest.raises(GatewayError, match="use 'avro' or 'json'"):
        encode_gateway_batch(batch(), "xml")
