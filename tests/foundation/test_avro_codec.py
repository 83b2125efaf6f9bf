"""Single-object Avro encoding: round trips, version resolution, and clear decode errors."""

from __future__ import annotations

import io
import struct

import fastavro
import pytest

from plantstream.avro import MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.schemas import crc64_avro, default_registry


def gateway_batch(n: int = 3) -> dict:
    return {
        "batch_id": "b1", "tenant": "acme", "site": "s1", "machine": "m1", "gateway": "g1",
        "sent_at": 1_700_000_000_000_000, "sequence": 7,
        "readings": [{"tag": f"T{i}", "ts": 1_700_000_000_000_000 + i, "value": i * 1.5,
                      "unit": None, "quality": 192} for i in range(n)],
    }


def test_crc64_avro_matches_the_spec_vector() -> None:
    # Avro's own test vectors (share/test/data/schema-tests.txt): "int" -> 8247732601305521295.
    assert crc64_avro(b'"int"') == 8247732601305521295


def test_round_trip_with_the_newest_version() -> None:
    codec = AvroCodec()
    data = codec.encode("gateway_batch", gateway_batch())
    assert data[:2] == MAGIC
    assert struct.unpack_from("<Q", data, 2)[0] == default_registry().latest("gateway_batch").fingerprint
    assert codec.decode(data, "gateway_batch") == gateway_batch()


def test_old_writer_is_read_by_new_reader_with_defaults() -> None:
    codec = AvroCodec()
    old = gateway_batch()
    del old["sequence"]
    data = codec.encode("gateway_batch", old, version=1)
    assert codec.decode(data, "gateway_batch")["sequence"] is None


def test_new_writer_is_read_by_old_reader() -> None:
    codec = AvroCodec()
    data = codec.encode("gateway_batch", gateway_batch())
    decoded = codec.decode(data, "gateway_batch", version=1)
    assert "sequence" not in decoded
    assert decoded["readings"][2]["value"] == 3.0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_avro"),
        (b'{"json": true}', "not_avro"),
        (MAGIC + b"\x00" * 8 + b"\x02", "unknown_schema"),
    ],
)
def test_undecodable_bytes_give_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data, "gateway_batch")
    assert info.value.reason == reason


def test_truncated_body_is_malformed_avro() -> None:
    data = AvroCodec().encode("gateway_batch", gateway_batch(50))
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data[: len(data) // 2], "gateway_batch")
    assert info.value.reason == "malformed_avro"


def test_trailing_garbage_is_malformed_avro() -> None:
    data = AvroCodec().encode("gateway_batch", gateway_batch(1))
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data + b"\x00\x01", "gateway_batch")
    assert info.value.reason == "malformed_avro"


def test_message_of_another_schema_is_wrong_schema() -> None:
    codec = AvroCodec()
    cmd = {"command_id": "c", "alert_id": "a", "tenant": "t", "site": "s", "machine": "m",
           "action": "resolve", "actor": "x", "issued_at": 1}
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.encode("alert_command", cmd), "gateway_batch")
    assert info.value.reason == "wrong_schema"


def test_encoding_is_plain_avro_after_the_header() -> None:
    sv = default_registry().latest("gateway_batch")
    data = AvroCodec().encode("gateway_batch", gateway_batch())
    assert fastavro.schemaless_reader(io.BytesIO(data[10:]), sv.parsed, None) == gateway_batch()
