"""Network faults between every service and the broker, through a real TCP proxy (Toxiproxy,
built by `make faults`): the broker advertises the proxy's port, so every client connection
(services, the gateway sender, the archive's readers) goes through it. Under a steady stream:
500 ms of latency, then a 60-s blackhole (nothing gets through either way, connections stay
open), then connection resets. Afterwards the same promises as ``test_e2e_crash.py``: every
reading in ClickHouse exactly once, no table doubled or short, anomaly events as a
never-disturbed detector's, every group at the log end. `make test` skips it unless Toxiproxy
was built (`make faults` builds it)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import settings_env
from e2e_support import (
    PacedSender,
    assert_nothing_lost_doubled_or_stalled,
    drain_and_read_archive,
    query,
    running_factory,
)
from netfaults import BINARY, Toxiproxy

from plantstream.kafka import create_topics
from plantstream.localbroker import free_port
from plantstream.settings import Settings

from brokers import new_broker

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.matrix,
              pytest.mark.skipif(not BINARY.exists(), reason="Toxiproxy not built: `make faults` builds it")]

BLACKHOLE_S = 60.0


def archived_rows(s: Settings) -> int:
    """Rows archived so far (read from ClickHouse through archival's query endpoint, not Kafka)."""
    rows = query(s, "SELECT (SELECT count() FROM readings) + (SELECT count() FROM rejected) AS n")
    return int(rows[0]["n"])


def test_latency_a_blackhole_and_resets_between_services_and_broker_lose_and_double_nothing(
        settings: Settings, tmp_path: Path) -> None:
    proxy_port = free_port()
    broker = new_broker(tmp_path / "kafka")
    broker.extra_env["PLANTSTREAM_KAFKA_ADVERTISED_PORT"] = str(proxy_port)
    toxi = Toxiproxy(tmp_path / "toxiproxy.log")
    try:
        toxi.proxy("kafka", proxy_port, broker.port)
        broker.start()
        s = replace(settings, kafka_bootstrap=f"127.0.0.1:{proxy_port}")
        create_topics(s)
        with running_factory(s, settings_env(s)) as (plan, stack):
            sender = PacedSender(s, plan.outputs, 30.0 + BLACKHOLE_S)
            sender.start()
            stack.wait_progress("archival")
            toxi.add("kafka", "slow", "latency", latency=500, jitter=100)
            time.sleep(10)
            toxi.remove("kafka", "slow")
            for stream in ("upstream", "downstream"):  # nothing gets through, nothing is closed
                toxi.add("kafka", f"hole-{stream}", "timeout", stream=stream, timeout=0)
            time.sleep(10)  # what was in flight lands; then the archive must stand still
            during = archived_rows(s)
            time.sleep(BLACKHOLE_S - 10)
            assert archived_rows(s) == during, "traffic got past the blackhole: the proxy is not in the path"
            for stream in ("upstream", "downstream"):
                toxi.remove("kafka", f"hole-{stream}")
            toxi.add("kafka", "reset", "reset_peer", stream="upstream", timeout=0)
            time.sleep(3)
            toxi.remove("kafka", "reset")
            sender.finish()
            exited = stack.restart_dead()
            archived = drain_and_read_archive(s, stack, plan)
            assert archived_rows(s) > during  # and the stream went on after it
        assert_nothing_lost_doubled_or_stalled(s, broker, archived, plan, "network faults", [
            "500 ms latency for 10 s", f"{BLACKHOLE_S:.0f}-s blackhole both ways", "connection resets"])
        print(f"services that exited and were restarted (as the supervisor would): {exited}")
    finally:
        toxi.stop()
        broker.stop()
