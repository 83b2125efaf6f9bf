"""A table of bad inputs through the real ingest and validation processors on the real broker:
each one becomes exactly the expected dead letter (reason, source, original bytes), the good
readings around them still come out, and nothing crashes."""

from __future__ import annotations

import math
import struct
from dataclasses import replace

import pytest
from readings_support import (
    MACHINE,
    SITE,
    TENANT,
    assets,
    collect,
    gateway_batch,
    gateway_output,
    now_us,
    reading,
    reading_id_of,
    run_ingest,
    run_validation,
)

from plantstream.assets import AssetRegistry
from plantstream.avro import CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, MAGIC, AvroCodec
from plantstream.kafka import Output
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS, READINGS_VALID, machine_key

from kafka_io import produce_all, read_all

HOUR_US = 3_600_000_000


def _raw(settings: Settings, value: bytes, ctype: str) -> Output:
    return Output(GATEWAY_READINGS.physical(settings), machine_key(TENANT, SITE, MACHINE), value,
                  [("content-type", ctype.encode())])


def _same_key(out: Output) -> Output:
    """A misconfigured gateway: keyed like press-01, but the batch names another machine."""
    out.key = machine_key(TENANT, SITE, MACHINE)
    return out


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    return replace(settings, max_batch_readings=50)


def test_bad_inputs_become_dead_letters_with_their_reason(small_settings: Settings) -> None:
    s = small_settings
    t0 = now_us() - 60_000_000
    good_avro = AvroCodec().encode("gateway_batch", gateway_batch("ok-0", [reading("V1", t0, 1.0)]))
    # (case, message, expected {(reason, index)}) -- index -1: the whole message
    cases: list[tuple[str, Output, set[tuple[str, int]]]] = [
        ("malformed json", _raw(s, b'{"batch_id": "x", "readings": [', CONTENT_TYPE_JSON),
         {("malformed_json", -1)}),
        ("deeply nested json", _raw(s, b'{"readings": ' + b"[" * 200_000, CONTENT_TYPE_JSON),
         {("malformed_json", -1)}),  # once a RecursionError that crash-looped ingest
        ("lone surrogate", _raw(s, b'{"batch_id": "\\ud800", "tenant": "acme", "site": "plant1", '
                                   b'"machine": "press-01", "gateway": "gw", "sent_at": 1, "readings": []}',
                                CONTENT_TYPE_JSON), {("malformed_json", -1)}),
        ("truncated avro", _raw(s, good_avro[:-7], CONTENT_TYPE_AVRO), {("malformed_avro", -1)}),
        ("unknown schema", _raw(s, MAGIC + struct.pack("<Q", 0xDEADBEEF) + good_avro[10:], CONTENT_TYPE_AVRO),
         {("unknown_schema", -1)}),
        ("oversized batch", gateway_output(s, gateway_batch(
            "big", [reading("V1", t0 + k, 1.0) for k in range(51)])), {("batch_too_large", -1)}),
        ("unknown machine", _same_key(gateway_output(s, gateway_batch(
            "ghost-1", [reading("V1", t0, 1.0)], machine="ghost"))), {("unknown_machine", -1)}),
        ("unknown tag", gateway_output(s, gateway_batch(
            "tags", [reading("V1", t0 + 1, 1.0), reading("X9", t0 + 1, 2.0), reading("V1", t0 + 2, 3.0)])),
         {("unknown_tag", 1)}),
        ("unit mismatch", gateway_output(s, gateway_batch("units", [reading("T1", t0 + 3, 50.0, "psi")])),
         {("unit_mismatch", 0)}),
        ("nan and inf", gateway_output(s, gateway_batch(
            "nan", [reading("V1", t0 + 4, math.nan), reading("P1", t0 + 4, math.inf)])),
         {("non_finite", 0), ("non_finite", 1)}),
        ("future ts", gateway_output(s, gateway_batch("future", [reading("V1", now_us() + HOUR_US, 1.0)])),
         {("future_timestamp", 0)}),
        ("ancient ts", gateway_output(s, gateway_batch("ancient", [reading("V1", 946_684_800_000_000, 1.0)])),
         {("stale_timestamp", 0)}),
        ("out of range", gateway_output(s, gateway_batch("range", [reading("V1", t0 + 5, 500.0)])),
         {("out_of_range", 0)}),
        ("out of order", gateway_output(s, gateway_batch("order", [
            reading("P1", t0 + 10, 14.5), reading("P1", t0 + 9, 14.5), reading("P1", t0 + 10, 14.5)])),
         {("out_of_order", 1), ("duplicate_timestamp", 2)}),
        ("bad quality", gateway_output(s, gateway_batch("quality", [reading("V1", t0 + 11, 1.0, quality=0)])),
         {("bad_quality", 0)}),
        ("json batch, degF to degC", gateway_output(s, gateway_batch(
            "json-temp", [reading("T1", t0 + 12, 212.0), reading("T1", t0 + 13, 32.0, "degF")]), fmt="json"),
         set()),
        ("duplicate batch", gateway_output(s, gateway_batch("tags", [reading("V1", t0 + 1, 1.0)])),
         {("duplicate_batch", -1)}),
        ("good after all that", gateway_output(s, gateway_batch("last", [reading("V1", t0 + 20, 7.0)])),
         set()),
    ]
    produce_all(s, [c[1] for c in cases])
    registry = AssetRegistry(assets())
    ingest = run_ingest(s, registry)
    validation = run_validation(s, registry)
    out = collect(s, expect_readings=2 + 3 + 51 + 1 + 3 + 1 + 2 + 1 + 1 + 1 + 3 + 1 + 2 + 1 + 1, timeout=30)
    assert not out.unaccounted()
    offsets = sorted(out.sent)  # one partition: every message has the same key
    assert len({p for p, _ in offsets}) == 1 and len(offsets) == len(cases)
    got: dict[int, set[tuple[str, int]]] = {}
    for d in out.dead:
        if d["source_topic"] == GATEWAY_READINGS.physical(s):
            off, idx = d["source_offset"], int(d["id"].rsplit(":", 1)[1])
        else:  # validation: map the reading id back to the gateway message
            batch_id, _, i = reading_id_of(d["original"]).rpartition(":")
            off = next(o for (_, o), b in out.sent.items() if b and b["batch_id"] == batch_id)
            idx = int(i)
        got.setdefault(off, set()).add((d["reason"], idx))
    for (name, _, expected), (_, off) in zip(cases, offsets, strict=True):
        assert got.get(off, set()) == expected, name
    # whole-message dead letters keep the original bytes and content type, byte for byte
    truncated = next(d for d in out.dead if d["reason"] == "malformed_avro")
    assert truncated["original"] == good_avro[:-7] and truncated["content_type"] == CONTENT_TYPE_AVRO
    assert truncated["stage"] == "ingest" and truncated["machine"] == "unknown"
    at = offsets[[c[0] for c in cases].index("truncated avro")]
    assert truncated["id"] == f"{GATEWAY_READINGS.physical(s)}:{at[0]}:{at[1]}:-1"
    nan = [d for d in out.dead if d["reason"] == "non_finite"]
    assert {d["sensor"] for d in nan} == {"vibration", "pressure"}
    assert all(d["stage"] == "validation" for d in nan)
    assert (nan[0]["tenant"], nan[0]["site"], nan[0]["machine"]) == (TENANT, SITE, MACHINE)
    # the good readings came through, converted to canonical units
    valid = {r["reading_id"]: r for m in read_all(s, READINGS_VALID.physical(s))
             for r in AvroCodec().decode(m.value(), "reading_batch")["readings"]}
    assert set(valid) == {"tags:0", "tags:2", "json-temp:0", "json-temp:1", "order:0", "last:0"}
    assert valid["json-temp:0"]["value"] == pytest.approx(100.0) and valid["json-temp:0"]["unit"] == "degC"
    assert valid["json-temp:1"]["value"] == pytest.approx(0.0)
    assert valid["order:0"]["value"] == pytest.approx(14.5 * 0.0689475729)
    assert valid["order:0"]["unit"] == "bar"
    # per-reason counters
    assert ingest.metrics.dead_letters["duplicate_batch"] == 1
    assert validation.metrics.dead_letters["non_finite"] == 2
    assert validation.metrics.dead_letters["out_of_order"] == 1
