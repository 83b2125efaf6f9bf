"""The ``rejected`` table after migration 0002 on the real embedded engine (no broker): a v2
dead letter keeps its original key, headers (order and null values), length and hash; a v1
dead letter still archives, with NULL/empty replay columns; a record archival itself cannot
decode keeps its key and headers too."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from archival_records import NOW_US, codec
from clickhouse_connect.driver.client import Client

from archival.sink import insert_run, plan_runs
from archival.tables import ROUTES, Source
from plantstream.db import connect, migrate
from plantstream.deadletter import DeadLetters
from plantstream.deadletter import Source as DeadSource
from plantstream.settings import Settings

ROUTE_BY_TOPIC = {r.topic: r for r in ROUTES}
HEADERS = (("content-type", b"application/json"), ("empty", None), ("content-type", b"again"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'ch'}")
    migrate(c, ttl_days=30)
    yield c
    c.close()  # one embedded engine per process


def test_v1_and_v2_dead_letters_and_archival_poison_rows_keep_what_replay_needs(
        client: Client, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1", clickhouse_url="chdb://memory")
    v2 = DeadLetters(settings, "ingest").make(
        DeadSource("gateway.readings", 1, 7, b'{"x":1}', HEADERS, b"acme/s1/m1"), "unknown_machine", "add it",
        tenant="acme", site="s1", machine="m1", now_us=NOW_US)
    v1 = codec.encode("dead_letter", {
        "id": "gateway.readings:1:8:-1", "tenant": "acme", "site": "s1", "machine": "m1", "stage": "ingest",
        "reason": "unknown_machine", "detail": "old", "source_topic": "gateway.readings",
        "source_partition": 1, "source_offset": 8, "original": b"old", "truncated": False,
        "rejected_at": NOW_US}, version=1)
    srcs = [Source("readings.rejected", 0, 0, v2.key, v2.value),
            Source("readings.rejected", 0, 1, b"acme/s1/m1", v1),
            Source("readings.valid", 0, 0, b"acme/s1/m2", b"not avro", None, (("h", b"v"),))]
    for run in plan_runs(srcs, ROUTE_BY_TOPIC, codec):
        insert_run(client, run)
    got = client.query(
        "SELECT id, original_key, original_header_keys, original_header_values, original_length, "
        "original_sha256 FROM rejected ORDER BY kafka_topic, id").result_rows
    assert [tuple(r) for r in got] == [
        ("gateway.readings:1:7:-1", "acme/s1/m1", ["content-type", "empty", "content-type"],
         ["application/json", None, "again"], 7, hashlib.sha256(b'{"x":1}').hexdigest()),
        ("gateway.readings:1:8:-1", None, [], [], None, None),
        ("readings.valid:0:0", "acme/s1/m2", ["h"], ["v"], 8, hashlib.sha256(b"not avro").hexdigest()),
    ]
