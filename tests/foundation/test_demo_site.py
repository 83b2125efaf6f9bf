"""A re-run of the demo gets a site of its own when the last run's readings overlap its factory time
(validation would reject every reading as out_of_order), checked in the real embedded engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plantstream.db.clickhouse import connect
from plantstream.db.migrate import migrate
from plantstream.demo import free_site
from plantstream.settings import Settings


def test_a_demo_rerun_within_the_last_runs_factory_time_gets_the_next_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_HOME", str(tmp_path))
    monkeypatch.delenv("PLANTSTREAM_CLICKHOUSE_URL", raising=False)
    settings = Settings.from_env()
    now_us = int(time.time() * 1e6)
    assert free_site(settings, now_us - 3_600_000_000) == "plant-1"  # an empty archive
    client = connect(settings.clickhouse_url)
    try:
        migrate(client, ttl_days=730)
        for site, minutes_ago in (("plant-1", 2), ("plant-2", 90), ("plant-3", 1)):
            client.command(f"INSERT INTO readings (tenant, site, machine, sensor, ts) VALUES "
                           f"('demo', '{site}', 'pump-01', 'flow', fromUnixTimestamp64Micro("
                           f"toInt64({now_us - minutes_ago * 60_000_000})))")
        client.command("INSERT INTO readings (tenant, site, machine, sensor, ts) VALUES "
                       f"('acme', 'plant-2', 'pump-01', 'flow', fromUnixTimestamp64Micro(toInt64({now_us})))")
    finally:
        client.close()
    # an hour of factory time ending now: plant-1 was read 2 min ago, plant-2 only 90 min ago
    # (another tenant's plant-2 is none of the demo's business)
    assert free_site(settings, now_us - 3_600_000_000) == "plant-2"
    assert free_site(settings, now_us - 60_000_000) == "plant-1"  # past every earlier reading
