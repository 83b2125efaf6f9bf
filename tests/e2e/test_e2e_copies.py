"""Two copies of the stateful services, one frozen (SIGSTOP) past its group session in the
middle of a stream while the other takes its partitions, then thawed: it comes back as a
zombie, maybe mid-transaction. Afterwards the same checks as the crash tests
(``test_e2e_crash``)."""

from __future__ import annotations

import pytest
from e2e_support import (
    PacedSender,
    assert_nothing_lost_doubled_or_stalled,
    drain_and_read_archive,
    running_factory,
)

from plantstream.settings import Settings

from brokers import Broker

pytestmark = pytest.mark.slow

STREAM_SECONDS = 32.0

# Two copies of each; copy 0 frozen past its session, so copy 1 takes its partitions, then thawed.
PAUSED = ("validation", "anomaly")


@pytest.mark.faults  # also alone: `make faults`
def test_a_copy_frozen_past_its_session_comes_back_and_nothing_is_lost_or_doubled(
        settings: Settings, service_env: dict[str, str], broker: Broker) -> None:
    with running_factory(settings, service_env) as (plan, stack):
        stack.start(*PAUSED, copy=1)
        stack.wait_members(PAUSED, 2)
        sender = PacedSender(settings, plan.outputs, STREAM_SECONDS)
        sender.start()
        for name in PAUSED:
            stack.wait_progress(name)
            stack.pause(name, copy=0, seconds=settings.group_session_seconds + 3)
        assert sender.is_alive(), "the stream ended before every pause was over; lengthen it"
        sender.finish()
        archived = drain_and_read_archive(settings, stack, plan)
        assert stack.dead() == [], stack.tails(stack.dead())  # the zombies carried on as members
        stack.wait_members(PAUSED, 2)
    assert_nothing_lost_doubled_or_stalled(settings, broker, archived, plan, "frozen copy", [
        f"SIGSTOP of {name} copy 0 of 2 for {settings.group_session_seconds + 3:g} s" for name in PAUSED])
