"""The real ClickHouse engine (embedded chDB): idempotent migrations, rows round-trip, and
the deduplication the archival service relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantstream.db import applied_versions, connect, embedded_path, migrate
from plantstream.errors import ConfigError


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    return connect(f"chdb://{tmp_path_factory.mktemp('ch') / 'db'}")


def test_migrations_apply_once(client) -> None:
    first = migrate(client)
    assert first and first[0] == "0001_init"
    assert migrate(client) == []
    assert 1 in applied_versions(client)
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"readings", "rejected", "anomalies", "alerts", "schema_migrations"} <= tables


def test_rows_round_trip_and_repeated_batch_is_dropped(client) -> None:
    migrate(client)
    cols = ["tenant", "site", "machine", "sensor", "ts", "value", "unit", "quality", "reading_id",
            "ingest_time", "kafka_partition", "kafka_offset"]
    rows = [["acme", "s1", "m1", "temp", 1_700_000_000_000_000 + i, 20.0 + i, "degC", 192, f"b:{i}",
             1_700_000_000_000_000, 0, 5] for i in range(100)]
    token = {"insert_deduplication_token": "readings.valid:0:5-5"}
    client.insert("readings", rows, column_names=cols, settings=token)
    client.insert("readings", rows, column_names=cols, settings=token)  # redelivery
    query = "SELECT count(), sum(value) FROM readings WHERE machine = 'm1'"
    count, total = client.query(query).result_rows[0]
    assert count == 100
    assert total == pytest.approx(sum(20.0 + i for i in range(100)))


def test_codecs_and_low_cardinality_are_in_place(client) -> None:
    migrate(client)
    ddl = client.command("SHOW CREATE TABLE readings")
    assert "LowCardinality(String)" in ddl and "Gorilla" in ddl and "DoubleDelta" in ddl


def test_dsn_forms() -> None:
    assert embedded_path("chdb:///var/lib/ps") == Path("/var/lib/ps")
    assert embedded_path("http://ch:8123") is None
    with pytest.raises(ConfigError, match="chdb:///"):
        connect("postgres://nope")
