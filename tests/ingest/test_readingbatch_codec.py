"""The fast reading_batch codec writes and reads exactly what fastavro does (pure logic)."""

from __future__ import annotations

import math
import struct

import pytest

from plantstream.avro import MAGIC, AvroCodec
from plantstream.errors import DecodeError
from plantstream.readingbatch import decode_readings, encode_readings, quality_bytes, string_bytes

CODEC = AvroCodec()


def _encode(ts: list[int], values: list[float], quality: list[int], sensors: list[str]) -> bytes:
    return encode_readings("b-7", "acme", "p1", "m1", "gw", 1_800_000_000_000_000,
                           list(range(0, 2 * len(ts), 2)),
                           [string_bytes(s) for s in sensors], ts, values,
                           [string_bytes("degC") + quality_bytes(q) for q in quality])


@pytest.mark.parametrize("ts", [
    [1_800_000_000_000_000 + k for k in range(300)],           # the common 8-byte varints
    [0, -1, 1 << 62, -(1 << 62), 946_684_800_000_000, 5],       # odd lengths: exact walk
])
def test_round_trip_against_fastavro(ts: list[int]) -> None:
    n = len(ts)
    values = [k * 0.5 - 3 for k in range(n)]
    values[0] = math.inf
    quality = [192 if k % 3 else k % 256 for k in range(n)]
    sensors = [f"sensor-{k % 7}" for k in range(n)]
    data = _encode(ts, values, quality, sensors)
    ref = CODEC.decode(data, "reading_batch")
    assert [r["reading_id"] for r in ref["readings"]] == [f"b-7:{2 * k}" for k in range(n)]
    assert [(r["sensor"], r["ts"], r["value"], r["quality"]) for r in ref["readings"]] == list(
        zip(sensors, ts, values, quality, strict=True))
    view = decode_readings(data)
    assert (view.batch_id, view.machine, view.ingest_time) == ("b-7", "m1", 1_800_000_000_000_000)
    assert view.ts.tolist() == ts and view.values.tolist() == values and view.quality == quality
    assert [s.decode() for s in view.sensors] == sensors and view.reading_id(1) == "b-7:2"
    keep = [k for k in range(n) if k % 2]
    sub = CODEC.decode(view.subset(keep), "reading_batch")["readings"]
    assert sub == [ref["readings"][k] for k in keep]
    assert CODEC.decode(view.subset([]), "reading_batch")["readings"] == []


def test_other_writers_block_layout_is_read_exactly() -> None:
    """A writer may split the array into blocks (negative count + byte size); still decodes."""
    data = _encode([1_800_000_000_000_000 + k for k in range(4)], [1.0] * 4, [192] * 4, ["a"] * 4)
    view = decode_readings(data)
    body = b"".join(view.reading_bytes(i) for i in range(4))
    half = b"".join(view.reading_bytes(i) for i in range(2))
    blocks = (data[:view.head_end] + bytes([3]) + struct.pack("B", len(half) * 2) + half  # -2 items, size
              + bytes([4]) + body[len(half):] + b"\x00")
    again = decode_readings(blocks)
    assert again.ts.tolist() == view.ts.tolist() and CODEC.decode(blocks, "reading_batch") is not None


@pytest.mark.parametrize(("data", "reason"), [
    (b"hello", "not_avro"),
    (MAGIC + b"\x00" * 8 + b"\x02", "unknown_schema"),
])
def test_bad_messages_raise_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_readings(data)
    assert err.value.reason == reason


def test_every_truncation_is_malformed_never_a_crash() -> None:
    data = _encode([1_800_000_000_000_000, 3], [1.0, 2.0], [192, 0], ["a", "b"])
    for cut in range(10, len(data)):
        with pytest.raises(DecodeError) as err:
            decode_readings(data[:cut])
        assert err.value.reason == "malformed_avro", cut


@pytest.mark.parametrize("sent_at", [None, 1_799_999_999_950_000, 0, -5, 1 << 62])
def test_v2_sent_at_round_trips_and_subsets_keep_it(sent_at: int | None) -> None:
    data = encode_readings("b-7", "acme", "p1", "m1", "gw", 1_800_000_000_000_000, [0, 1],
                           [string_bytes("a"), string_bytes("b")], [1_800_000_000_000_000] * 2, [1.0, 2.0],
                           [string_bytes("degC") + quality_bytes(192)] * 2, sent_at=sent_at)
    ref = CODEC.decode(data, "reading_batch")
    assert ref["sent_at"] == sent_at and [r["sensor"] for r in ref["readings"]] == ["a", "b"]
    view = decode_readings(data)
    assert view.sent_at == sent_at and view.ts.tolist() == [1_800_000_000_000_000] * 2
    sub = CODEC.decode(view.subset([1]), "reading_batch")
    assert sub["sent_at"] == sent_at and sub["readings"] == ref["readings"][1:]


def test_v1_writers_are_still_read_with_sent_at_null() -> None:
    rec = {"batch_id": "b", "tenant": "t", "site": "s", "machine": "m", "gateway": "g", "ingest_time": 7,
           "readings": [{"reading_id": "b:0", "sensor": "x", "ts": 5, "value": 1.5, "unit": "bar",
                         "quality": 192}]}
    old = CODEC.encode("reading_batch", rec, version=1)
    view = decode_readings(old)
    assert view.sent_at is None and view.ingest_time == 7 and view.values.tolist() == [1.5]
    assert CODEC.decode(view.subset([0]), "reading_batch") == dict(rec, sent_at=None)
    bad = bytearray(encode_readings("b", "t", "s", "m", "g", 7, [], [], [], [], []))
    assert bad[20:22] == b"\x0e\x00"  # 10-byte header, five 1-char strings, ingest_time 7, sent_at null
    bad[21] = 4  # sent_at's union index 2 does not exist
    with pytest.raises(DecodeError) as err:
        decode_readings(bytes(bad))
    assert err.value.reason == "malformed_avro"
