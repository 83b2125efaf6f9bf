"""Every transactional service frozen at an exact step of a transaction, past its group session,
then thawed: outputs produced but offsets not sent, offsets sent but not committed, just
committed. Ingest, validation and anomaly have a second copy that takes their partitions
meanwhile; maintenance has none (its partitions wait). The frozen copies come back as
zombies in the middle of their transaction. A zombie that had not sent its offsets is fenced
(KIP-447: the group generation sent with them is stale) and aborts; one that had sent them
may still commit, and the new owner must wait for that (stable offsets) before restoring
its state, or it resumes from the zombie's offsets with the state from before them.
Afterwards the same checks as the crash tests: every reading archived exactly once, rollups
equal raw counts, anomalies and alerts as the no-fault reference, every group at the log
end."""

from __future__ import annotations

import os
import signal
import time

import pytest
from e2e_support import (
    PacedSender,
    assert_nothing_lost_doubled_or_stalled,
    drain_and_read_archive,
    running_factory,
)

from plantstream.faultpoint import ENV, STEPS
from plantstream.settings import Settings

from brokers import Broker

pytestmark = pytest.mark.slow

STREAM_SECONDS = 40.0
OCCURRENCE = 5  # the 5th transaction of each process: mid-stream, with state and outputs
TRANSACTIONAL = ("ingest", "validation", "anomaly", "maintenance")
SECOND_COPY = ("ingest", "validation", "anomaly")  # a frozen one-copy ingest would stop the stream


@pytest.mark.faults
@pytest.mark.matrix
@pytest.mark.parametrize("step", STEPS)
def test_a_copy_frozen_at_each_transaction_step_is_fenced_and_nothing_is_lost_or_doubled(
        settings: Settings, service_env: dict[str, str], broker: Broker, step: str) -> None:
    frozen_s = settings.group_session_seconds + 3
    with running_factory(settings, {**service_env, ENV: f"{step}@{OCCURRENCE}"}) as (plan, stack):
        stack.start(*SECOND_COPY, copy=1, env={k: v for k, v in stack.env.items() if k != ENV})
        stack.wait_members(SECOND_COPY, 2)
        sender = PacedSender(settings, plan.outputs, STREAM_SECONDS)
        sender.start()
        pids = [stack.wait_stopped(name, copy=0) for name in TRANSACTIONAL]  # each stopped itself
        time.sleep(frozen_s)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        assert sender.is_alive(), "the stream ended while the copies were frozen; lengthen it"
        sender.finish()
        archived = drain_and_read_archive(settings, stack, plan)
        assert stack.dead() == [], stack.tails(stack.dead())
    assert_nothing_lost_doubled_or_stalled(settings, broker, archived, plan, f"frozen at {step}", [
        f"{name} copy 0 stopped at {step} of transaction {OCCURRENCE} for {frozen_s:g} s"
        for name in TRANSACTIONAL])
