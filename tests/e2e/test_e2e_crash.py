"""Crash safety of the whole platform: each service SIGKILLed in turn in the middle of a
stream and restarted (the broker restart and ``make down``/``make up`` are in
``test_e2e_broker_restart.py``, a file of their own so the two long runs share the workers).
Afterwards:

- every reading is in ClickHouse exactly once, and no table (anomalies, alerts,
  notifications, the rollups) holds a row twice or is a block short;
- the anomaly events equal those of a never-killed detector fed the same valid readings;
- every service group's committed offset equals the log end on every input partition, as
  Kafka's own ConsumerGroupCommand reports it (commits resumed on every partition).
"""

from __future__ import annotations

import pytest
from e2e_support import (
    PacedSender,
    assert_nothing_lost_doubled_or_stalled,
    drain_and_read_archive,
    running_factory,
)

from plantstream.settings import Settings
from plantstream.supervisor import SERVICES

from brokers import Broker

pytestmark = pytest.mark.slow

STREAM_SECONDS = 32.0
# Downstream first: a killed service's input keeps flowing while it is away, so the next one
# (upstream of it) is busy at once; the notifier last, once alerts flow (faults start mid-stream).
KILL_ORDER = ("archival", "maintenance", "anomaly", "validation", "ingest", "notifier")


@pytest.mark.faults  # also alone: `make faults`
def test_sigkill_of_each_service_mid_stream_loses_and_duplicates_nothing(
        settings: Settings, service_env: dict[str, str], broker: Broker) -> None:
    with running_factory(settings, service_env) as (plan, stack):
        sender = PacedSender(settings, plan.outputs, STREAM_SECONDS)
        sender.start()
        assert sorted(KILL_ORDER) == sorted(SERVICES)
        for name in KILL_ORDER:
            stack.wait_progress(name)  # it is working: the kill lands mid-stream
            stack.kill(name)
            stack.start(name)
        assert sender.is_alive(), "the stream ended before every service was killed; lengthen it"
        sender.finish()
        archived = drain_and_read_archive(settings, stack, plan)
    assert_nothing_lost_doubled_or_stalled(settings, broker, archived, plan, "SIGKILL each service",
                                           [f"SIGKILL of {name} mid-stream" for name in KILL_ORDER])
