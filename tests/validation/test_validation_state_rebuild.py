"""Validation's per-sensor order state is rebuilt from its changelog by a new copy (restart
or partition move): a reading older than one accepted before the restart is still caught."""

from __future__ import annotations

from readings_support import (
    assets,
    collect,
    gateway_batch,
    gateway_output,
    now_us,
    reading,
    run_ingest,
    run_validation,
)

from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.settings import Settings
from plantstream.topics import VALIDATION_STATE

from kafka_io import produce_all, read_topic


def test_order_state_survives_a_restart(settings: Settings) -> None:
    registry = AssetRegistry(assets())
    t0 = now_us() - 60_000_000
    produce_all(settings, [gateway_output(settings, gateway_batch("before", [reading("V1", t0, 1.0)]))])
    run_ingest(settings, registry, idle=3)
    first = run_validation(settings, registry, idle=3)
    assert first.clock.store.partitions() == []  # leaving the group dropped the in-memory state
    changelog = read_topic(settings, VALIDATION_STATE.physical(settings), until=lambda ms: len(ms) >= 1)
    state = AvroCodec().decode(changelog[-1].value(), "validation_sensor_state")
    assert (state["machine"], state["last_ts"]) == ("press-01", {"vibration": t0})
    produce_all(settings, [gateway_output(settings, gateway_batch("after", [
        reading("V1", t0 - 1_000_000, 2.0), reading("V1", t0, 3.0), reading("V1", t0 + 1, 4.0)]))])
    run_ingest(settings, registry, idle=3)
    second = run_validation(settings, registry, idle=3)  # a new copy: state only from Kafka
    out = collect(settings, expect_readings=4, timeout=30)
    assert out.unaccounted() == []
    assert sorted(out.valid_ids) == ["after:2", "before:0"]
    assert sorted((d["reason"], d["sensor"]) for d in out.dead) == [
        ("duplicate_timestamp", "vibration"), ("out_of_order", "vibration")]
    assert second.metrics.dead_letters == {"out_of_order": 1, "duplicate_timestamp": 1}
