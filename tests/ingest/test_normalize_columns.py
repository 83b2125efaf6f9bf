"""Ingest's normalisation on the column path (pure logic, no Kafka): every reading of every
gateway message becomes exactly the canonical reading (or the dead letter) that the
per-reading definition says, and the batch carries the gateway's sent_at."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingest.dedup import SeenBatches
from ingest.normalize import Normalizer
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.gateway.contract import DEFAULT_LIMITS, decode_gateway_message, encode_gateway_batch
from plantstream.gateway.simulator import Factory
from plantstream.settings import Settings
from plantstream.units import IDENTITY, UnitError, conversion

START = 1_777_636_800_000_000
NOW = START + 3_600_000_000
CODEC = AvroCodec()


def expected(batch: dict[str, Any], registry: AssetRegistry) -> list[tuple]:
    """The definition, one reading at a time: ('ok', reading_id, sensor, ts, value bits, unit,
    quality) or ('dead', reason, index)."""
    out = []
    mid = (batch["tenant"], batch["site"], batch["machine"])
    for i, r in enumerate(batch["readings"]):
        s = registry.sensor_by_tag(mid, r["tag"])
        if s is None:
            out.append(("dead", "unknown_tag", i))
            continue
        try:
            conv = conversion(r["unit"] or s.get("gateway_unit") or s["unit"], s["unit"])
        except UnitError:
            out.append(("dead", "unit_mismatch", i))
            continue
        v = r["value"] if conv is IDENTITY else r["value"] * conv.scale + conv.offset
        out.append(("ok", f"{batch['batch_id']}:{i}", s["sensor"], r["ts"], struct.pack("<d", v), s["unit"],
                    r["quality"]))
    return out


def produced(outs: list, out_topic: str) -> tuple[list[tuple], int | None]:
    got, sent_at = [], None
    for o in outs:
        if o.topic == out_topic:
            rec = CODEC.decode(o.value, "reading_batch")
            assert rec["ingest_time"] == NOW
            sent_at = rec["sent_at"]
            got += [("ok", r["reading_id"], r["sensor"], r["ts"], struct.pack("<d", r["value"]), r["unit"],
                     r["quality"]) for r in rec["readings"]]
        else:
            dl = CODEC.decode(o.value, "dead_letter")
            got.append(("dead", dl["reason"], json.loads(dl["original"])))
    return got, sent_at


def test_column_normalisation_matches_the_per_reading_definition(tmp_path: Path) -> None:
    settings = replace(Settings.from_env(), home=tmp_path)
    factory = Factory.build(8, seed=4, start_us=START, horizon=120, faulty=3, warm_start=True)
    registry = AssetRegistry(factory.assets(0))
    batches = list(factory.batches(batch_size=100))
    pump = next(b for b in batches if b["machine"] == "pump-01")
    temp = next(r for r in pump["readings"] if r["tag"].endswith(".TT_MOT"))
    odd = dict(pump, batch_id="odd", readings=[
        dict(pump["readings"][0], value=-0.0), dict(pump["readings"][0], tag="NOT.MAPPED"),
        dict(pump["readings"][0], unit="kg"), dict(pump["readings"][1], quality=64),
        dict(temp, unit="degF", value=212.0), dict(pump["readings"][2], value=float("inf"))])
    batches.append(odd)
    norm = Normalizer(registry, SeenBatches(settings), DeadLetters(settings, "ingest"), "normalized",
                      DEFAULT_LIMITS)
    converted = 0
    for n, b in enumerate(batches):
        for fmt in ("avro", "json"):
            value, headers = encode_gateway_batch(b, fmt)
            if fmt == "json":
                b = decode_gateway_message(value, headers)
                b = dict(b, batch_id=b["batch_id"] + "-json")
                value, headers = encode_gateway_batch(b, fmt)
            got, sent_at = produced(norm.normalize(Source("gw", 0, n, value, headers), NOW), "normalized")
            want = expected(b, registry)
            dead = [w for w in want if w[0] == "dead"]
            ok = [w for w in want if w[0] == "ok"]
            assert [g[:2] for g in got[:len(dead)]] == [d[:2] for d in dead]
            assert [g[2]["tag"] for g in got[:len(dead)]] == [b["readings"][d[2]]["tag"] for d in dead]
            assert got[len(dead):] == ok and sent_at == b["sent_at"]
            converted += sum(1 for r, w in zip(b["readings"], want, strict=True)
                             if w[0] == "ok" and struct.pack("<d", r["value"]) != w[4])
    assert converted > 100  # imperial gateways: degF and psi were converted
    want = expected(odd, registry)
    assert [w[1] for w in want if w[0] == "dead"] == ["unknown_tag", "unit_mismatch"]
    assert want[0][4] == struct.pack("<d", -0.0) and want[4][4] == struct.pack("<d", 100.0)


def test_a_repeated_batch_is_a_duplicate_dead_letter(tmp_path: Path) -> None:
    settings = replace(Settings.from_env(), home=tmp_path)
    factory = Factory.build(2, seed=1, start_us=START, horizon=20)
    norm = Normalizer(AssetRegistry(factory.assets(0)), SeenBatches(settings),
                      DeadLetters(settings, "ingest"), "normalized", DEFAULT_LIMITS)
    value, headers = encode_gateway_batch(next(iter(factory.batches())), "avro")
    assert [o.topic for o in norm.normalize(Source("gw", 0, 0, value, headers), NOW)] == ["normalized"]
    (again,) = norm.normalize(Source("gw", 0, 1, value, headers), NOW)
    assert CODEC.decode(again.value, "dead_letter")["reason"] == "duplicate_batch"
