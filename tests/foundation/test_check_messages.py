"""What the loops do with the error events a poll returns (pure logic: messages built by hand)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from plantstream.runner import check_messages


def data(offset: int) -> Message:
    return Message(topic="t", partition=0, offset=offset, value=b"x")


def event(code: int, text: str = "") -> Message:
    return Message(topic="t", partition=0, offset=-1, error=KafkaError(code, text))


def test_data_passes_and_transient_errors_are_logged_not_raised() -> None:
    msgs = [data(1), event(KafkaError._TRANSPORT, "broker down"), data(2)]
    assert [m.offset() for m in check_messages(msgs)] == [1, 2]


def test_partition_eof_marks_the_partition_at_its_end_until_data_comes() -> None:
    at_end: set[tuple[str, int]] = set()
    check_messages([data(1), event(KafkaError._PARTITION_EOF)], at_end)
    assert at_end == {("t", 0)}
    check_messages([data(2)], at_end)
    assert at_end == set()


def test_a_fatal_consumer_event_raises_although_its_fatal_flag_is_false() -> None:
    # librdkafka delivers a fatal consumer error (e.g. FENCED_INSTANCE_ID) as a _FATAL event
    fatal = event(KafkaError._FATAL, "Static consumer fenced by other consumer")
    assert not fatal.error().fatal()
    with pytest.raises(KafkaException, match="fenced"):
        check_messages([data(1), fatal])
