"""Crash safety of the whole platform: each service SIGKILLed in turn in the middle of a
stream and restarted, and the broker stopped and restarted under running services. Afterwards
every reading is in ClickHouse exactly once, no anomaly event or alert revision is stored
twice, and every service's consumer group has read everything."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import settings_env
from e2e_support import PacedSender, assert_archived_exactly_once, drain_and_read_archive, running_factory

from plantstream.kafka import create_topics
from plantstream.settings import Settings
from plantstream.supervisor import SERVICES

from brokers import new_broker

pytestmark = pytest.mark.slow

STREAM_SECONDS = 45.0


def test_sigkill_of_each_service_mid_stream_loses_and_duplicates_nothing(
        settings: Settings, service_env: dict[str, str]) -> None:
    with running_factory(settings, service_env) as (plan, stack):
        sender = PacedSender(settings, plan.outputs, STREAM_SECONDS)
        sender.start()
        for name in SERVICES:  # ingest, validation, anomaly, maintenance, archival
            stack.wait_progress(name)  # it is working: the kill lands mid-stream
            stack.kill(name)
            stack.start(name)
        assert sender.is_alive(), "the stream ended before every service was killed; lengthen it"
        sender.finish()
        archived = drain_and_read_archive(settings, stack, plan)
    assert_archived_exactly_once(archived, plan)
    assert archived.events["anomalies"] > 0 and archived.events["alerts"] > 0, archived.events


def test_broker_stop_and_restart_mid_stream(settings: Settings, tmp_path: Path) -> None:
    broker = new_broker(tmp_path / "kafka")
    broker.start()
    try:
        s = replace(settings, kafka_bootstrap=broker.bootstrap)
        create_topics(s)
        with running_factory(s, settings_env(s)) as (plan, stack):
            sender = PacedSender(s, plan.outputs, 30.0)
            sender.start()
            stack.wait_progress("archival")
            broker.stop()
            assert not broker.alive()
            broker.start()  # same data directory
            sender.finish()
            exited = stack.restart_dead()
            archived = drain_and_read_archive(s, stack, plan)
    finally:
        broker.stop()
    assert exited == [], f"services that exited while the broker was down: {exited}"
    assert_archived_exactly_once(archived, plan)
    assert archived.events["anomalies"] > 0 and archived.events["alerts"] > 0, archived.events
