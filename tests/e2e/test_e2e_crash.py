"""Crash safety of the whole platform: each service SIGKILLed in turn in the middle of a
stream and restarted, and the broker stopped and restarted under running services. Afterwards
every reading is in ClickHouse exactly once, no anomaly event or alert revision is stored
twice, and every service's consumer group has read everything."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import settings_env
from e2e_support import (
    PacedSender,
    Stack,
    assert_conserved,
    duplicates,
    event_counts,
    factory_plan,
    publish_factory,
    wait_archived,
)

from plantstream.kafka import create_topics
from plantstream.settings import Settings
from plantstream.supervisor import SERVICES

from brokers import new_broker

pytestmark = pytest.mark.slow

STREAM_SECONDS = 45.0


def test_sigkill_of_each_service_mid_stream_loses_and_duplicates_nothing(
        settings: Settings, service_env: dict[str, str]) -> None:
    plan = factory_plan(settings)
    publish_factory(settings, plan)
    stack = Stack(settings, service_env)
    stack.start()
    try:
        stack.wait_consuming()
        sender = PacedSender(settings, plan.outputs, STREAM_SECONDS)
        sender.start()
        for name in SERVICES:  # ingest, validation, anomaly, maintenance, archival
            stack.wait_progress(name)  # it is working: the kill lands mid-stream
            stack.kill(name)
            stack.start(name)
        assert sender.is_alive(), "the stream ended before every service was killed; lengthen it"
        sender.finish()
        stack.wait_drained()
        out = wait_archived(settings, stack, plan.readings)
        dups, events = duplicates(settings), event_counts(settings)
    finally:
        stack.stop()
    assert_conserved(out, plan)
    assert dups == {table: [] for table in dups}
    assert events["anomalies"] > 0 and events["alerts"] > 0, events


def test_broker_stop_and_restart_mid_stream(settings: Settings, tmp_path: Path) -> None:
    broker = new_broker(tmp_path / "kafka")
    broker.start()
    try:
        s = replace(settings, kafka_bootstrap=broker.bootstrap)
        create_topics(s)
        plan = factory_plan(s)
        publish_factory(s, plan)
        stack = Stack(s, settings_env(s))
        stack.start()
        try:
            stack.wait_consuming()
            sender = PacedSender(s, plan.outputs, 30.0)
            sender.start()
            stack.wait_progress("archival")
            broker.stop()
            assert not broker.alive()
            broker.start()  # same data directory
            sender.finish()
            exited = stack.restart_dead()
            stack.wait_drained()
            out = wait_archived(s, stack, plan.readings)
            dups, events = duplicates(s), event_counts(s)
        finally:
            stack.stop()
    finally:
        broker.stop()
    assert exited == [], f"services that exited while the broker was down: {exited}"
    assert_conserved(out, plan)
    assert dups == {table: [] for table in dups}
    assert events["anomalies"] > 0 and events["alerts"] > 0, events
