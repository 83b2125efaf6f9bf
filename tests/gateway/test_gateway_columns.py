"""The column decoder of gateway_batch gives exactly what fastavro gives, for every input:
the same record (bit for bit), or the same DecodeError reason (pure logic, no Kafka)."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plantstream.avro import AvroCodec
from plantstream.errors import DecodeError
from plantstream.gateway.columns import ColumnDecoder, GatewayColumns, decode_avro_columns, fast_writers
from plantstream.gateway.contract import (
    GatewayLimits,
    decode_gateway_columns,
    decode_gateway_message,
    encode_gateway_batch,
)
from plantstream.gateway.simulator import Factory
from plantstream.schemas import SchemaRegistry, default_registry

START = 1_777_636_800_000_000
CODEC = AvroCodec()


def bits(x: Any) -> Any:
    """Floats by their bits, so NaN == NaN and -0.0 != 0.0 when comparing records."""
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, list):
        return [bits(v) for v in x]
    if isinstance(x, float):
        return ("double", struct.pack("<d", x))
    return x


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", bits(decode(data))
    except DecodeError as exc:
        return "error", exc.reason


def reference(data: bytes) -> dict[str, Any]:
    return CODEC.decode(data, "gateway_batch")


def columns(data: bytes) -> dict[str, Any]:
    return decode_avro_columns(data).to_dict()


def sim_messages(n_machines: int = 8, seed: int = 2, batch: int = 120) -> list[bytes]:
    f = Factory.build(n_machines, seed=seed, start_us=START, horizon=300, faulty=n_machines // 2)
    return [encode_gateway_batch(b, "avro")[0] for b in f.batches(batch_size=batch)]


def batch(readings: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {"batch_id": "b-1", "tenant": "acme", "site": "p1", "machine": "pump-01", "gateway": "gw",
            "sent_at": START + 500_000, "sequence": 4, "readings": readings, **over}


def reading(tag: str = "P01.T1", ts: int = START, value: float = 1.5, unit: str | None = None,
            quality: int = 192) -> dict[str, Any]:
    return {"tag": tag, "ts": ts, "value": value, "unit": unit, "quality": quality}


def test_simulated_batches_take_the_fast_path_and_equal_fastavro() -> None:
    msgs = sim_messages()
    for data in msgs:
        cols = decode_avro_columns(data)
        assert not cols.via_fastavro
        assert bits(cols.to_dict()) == bits(reference(data))
        assert isinstance(cols.ts, np.ndarray) and cols.ts.dtype == np.int64
        assert cols.values.dtype == np.float64


def test_v1_writers_are_read_fast_and_resolve_sequence_to_null() -> None:
    b = batch([reading(ts=START + k, value=k * 0.25) for k in range(10)])
    data = CODEC.encode("gateway_batch", b, version=1)
    cols = decode_avro_columns(data)
    assert not cols.via_fastavro and cols.sequence is None
    assert cols.to_dict() == reference(data) == dict(b, sequence=None)


@pytest.mark.parametrize("case, readings", [
    ("no readings", []),
    ("one reading", [reading()]),
    ("short timestamps", [reading(ts=k) for k in (0, 1, -1, 5)]),
    ("huge timestamps", [reading(ts=t) for t in (2**62, -(2**63), 2**63 - 1)]),
    ("odd values", [reading(value=v) for v in (float("nan"), -0.0, float("inf"), -float("inf"), 5e-324)]),
    ("big and negative quality", [reading(quality=q) for q in (0, -1, 70_000, 2**31 - 1, -(2**31))]),
    ("units and long tags", [reading(tag="T" * 300, unit="degF"), reading(unit="é" * 70), reading(tag="")]),
    ("not periodic", [reading(tag=f"T{k % 3}" if k < 7 else "X", ts=START + k) for k in range(12)]),
    ("periodic, last period partial", [reading(tag=f"T{k % 3}", ts=START + k) for k in range(10)]),
    ("period broken late", [reading(tag=f"T{k % 3}" if k != 8 else "TX", ts=START + k) for k in range(12)]),
    ("period broken by a unit", [reading(tag=f"T{k % 2}", unit="bar" if k == 5 else None) for k in range(8)]),
    ("unicode", [reading(tag="Temp°C.1", unit="°C")]),
])
def test_unusual_but_valid_batches_decode_as_fastavro_does(case: str, readings: list[dict[str, Any]]) -> None:
    for seq in (None, 0, -7, 2**62):
        data = CODEC.encode("gateway_batch", batch(readings, sequence=seq))
        assert bits(columns(data)) == bits(reference(data)), case


def test_an_array_written_in_blocks_is_read_as_fastavro_reads_it() -> None:
    """Another writer may split the array into blocks (negative count + byte size)."""
    rs = [reading(ts=START + k) for k in range(4)]
    data = CODEC.encode("gateway_batch", batch(rs))
    one = CODEC.encode("gateway_batch", batch(rs[:1]))
    head = CODEC.encode("gateway_batch", batch([]))[:-1]  # everything before the array's count
    item = one[len(head) + 1:-1]
    assert head + b"\x02" + item + b"\x00" == one
    blocks = head + b"\x03" + bytes([len(item) * 2 * 2]) + item + item + b"\x04" + item + item + b"\x00"
    assert columns(blocks) == reference(blocks)
    assert decode_avro_columns(blocks).via_fastavro and len(decode_avro_columns(data)) == 4


def test_every_truncation_gives_the_same_error_as_fastavro() -> None:
    data = sim_messages(2, seed=5, batch=20)[3]
    for cut in range(len(data)):
        assert outcome(columns, data[:cut]) == outcome(reference, data[:cut]), cut
        assert outcome(columns, data[:cut])[0] == "error"
    assert outcome(columns, data + b"\x00") == ("error", "malformed_avro")


def test_random_corruptions_give_what_fastavro_gives() -> None:
    """Flipped, inserted and appended bytes anywhere after the marker: same record or same reason."""
    rng = random.Random(11)
    msgs = sim_messages(4, seed=9, batch=40)[:30]
    decoded = 0
    for _ in range(3000):
        m = bytearray(rng.choice(msgs))
        how = rng.random()
        if how < 0.6:
            for _ in range(rng.randint(1, 3)):
                m[rng.randrange(2, len(m))] = rng.randrange(256)
        elif how < 0.8:
            i = rng.randrange(10, len(m))
            m[i:i] = bytes([rng.randrange(256)])
        else:
            m += bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        got = outcome(columns, bytes(m))
        assert got == outcome(reference, bytes(m))
        decoded += got[0] == "ok"
    assert 100 < decoded < 2900  # both kinds of outcome were exercised


def test_invalid_utf8_and_wrong_headers_fail_like_fastavro() -> None:
    data = CODEC.encode("gateway_batch", batch([reading(tag="AB")]))
    bad = data.replace(b"AB", b"\xff\xfe")
    assert outcome(columns, bad) == outcome(reference, bad) == ("error", "malformed_avro")
    assert outcome(columns, b"\xc3\x01" + b"\x00" * 8 + data[10:]) == ("error", "unknown_schema")
    other = CODEC.encode("alert_command", {"command_id": "c", "alert_id": "a", "tenant": "t", "site": "s",
                                           "machine": "m", "action": "resolve", "actor": "me", "reason": None,
                                           "until": None, "issued_at": 1})
    assert outcome(columns, other) == outcome(reference, other) == ("error", "wrong_schema")
    assert outcome(columns, b"{}") == ("error", "not_avro")


def test_an_unknown_reader_layout_falls_back_to_fastavro(tmp_path: Path) -> None:
    """A v3 with a field the decoder does not know: nothing is read fast, everything still decodes."""
    root = tmp_path / "schemas"
    shutil.copytree(Path(default_registry().root), root)
    v2 = json.loads((root / "gateway_batch" / "v2.avsc").read_text())
    v2["fields"].insert(-1, {"name": "firmware", "type": ["null", "string"], "default": None})
    (root / "gateway_batch" / "v3.avsc").write_text(json.dumps(v2))
    codec = AvroCodec(SchemaRegistry(root))
    assert fast_writers(codec.registry) == {}
    assert len(fast_writers(default_registry())) == 2  # v1 and v2 of the real folder
    data = sim_messages(2, batch=20)[0]
    cols = ColumnDecoder(codec).decode(data)
    assert cols.via_fastavro and cols.to_dict() == reference(data)


def test_contract_columns_apply_the_same_limits_and_read_json_too() -> None:
    b = batch([reading(ts=START + k, unit="degF" if k % 2 else None) for k in range(3)])
    for fmt in ("avro", "json"):
        value, headers = encode_gateway_batch(b, fmt)
        cols = decode_gateway_columns(value, headers)
        assert isinstance(cols, GatewayColumns)
        assert cols.to_dict() == decode_gateway_message(value, headers) == b
        with pytest.raises(DecodeError) as err:
            decode_gateway_columns(value, headers, GatewayLimits(max_readings=2))
        assert err.value.reason == "batch_too_large"
        with pytest.raises(DecodeError) as err:
            decode_gateway_columns(value, headers, GatewayLimits(max_bytes=len(value) - 1))
        assert err.value.reason == "message_too_large"
    assert decode_gateway_columns(*encode_gateway_batch(b, "avro")).reading(1) == b["readings"][1]
