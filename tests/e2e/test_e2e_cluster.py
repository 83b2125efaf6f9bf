"""The platform on a 3-broker KRaft cluster on loopback (replication 3, min.insync.replicas 2),
with a partition leader SIGKILLed mid-stream and started again later: the leader of the
transaction log's only partition, so the coordinator of every transaction of every service
dies with it (the hardest node to lose; it found a fatal INVALID_TXN_STATE that killed
validation, now handled by the loop).

Afterwards the same checks as the crash tests (``test_e2e_crash``): every reading in
ClickHouse exactly once, rollups whole, anomalies equal to a never-disturbed detector's,
notifications once, and every group at the log end on every partition.
"""

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
    running_factory,
)

from plantstream.kafka import admin_client, create_topics
from plantstream.localbroker import LocalCluster
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID

pytestmark = pytest.mark.slow

STREAM_SECONDS = 32.0
DOWN_SECONDS = 10.0
TRANSACTION_LOG = "__transaction_state"  # the services work on with two of three replicas meanwhile


def leader_of(s: Settings, topic: str, partition: int) -> int:
    meta = admin_client(s).list_topics(topic, timeout=20)
    return meta.topics[topic].partitions[partition].leader


@pytest.mark.faults
@pytest.mark.matrix  # `make faults` only: minutes of a 3-broker cluster
def test_sigkill_of_the_transaction_coordinator_broker_mid_stream_loses_and_doubles_nothing(
        settings: Settings, tmp_path: Path) -> None:
    cluster = LocalCluster.new(tmp_path / "cluster", heap="384m")
    cluster.start()
    try:
        s = replace(settings, kafka_bootstrap=cluster.bootstrap, replication=cluster.replicas)
        create_topics(s)
        with running_factory(s, settings_env(s)) as (plan, stack):
            sender = PacedSender(s, plan.outputs, STREAM_SECONDS)
            sender.start()
            stack.wait_progress("validation")
            stack.wait_progress("archival")
            victim = leader_of(s, TRANSACTION_LOG, 0)
            valid = READINGS_VALID.physical(s)
            led = [p for p in range(s.partitions) if leader_of(s, valid, p) == victim]
            sender.spread_rest_over(DOWN_SECONDS + 10.0)  # traffic the whole time, however late we are
            cluster.kill(victim)
            time.sleep(DOWN_SECONDS)
            stack.assert_alive(f"the {DOWN_SECONDS:g} s without broker {victim}")
            assert leader_of(s, TRANSACTION_LOG, 0) != victim
            # the whole time without the broker was under traffic (its restart, which waits until
            # the node is unfenced, took 41 s on a loaded machine, so it may end after the stream)
            assert sender.is_alive(), "the stream ended while the broker was down"
            cluster.start(victim)
            sender.finish()
            archived = drain_and_read_archive(s, stack, plan)
            assert stack.dead() == [], stack.tails(stack.dead())
        fault = (f"SIGKILL of broker {victim} (transaction coordinator, leader of readings.valid{led}) "
                 f"for {DOWN_SECONDS:g} s")
        assert_nothing_lost_doubled_or_stalled(s, cluster.any_alive(), archived, plan, "3-broker cluster",
                                               [fault])
    finally:
        cluster.stop()
