"""Transactional ids are stable per service copy, so a restarted copy fences its predecessor
at once (its open transaction is aborted by the new copy's ``init_transactions``, not after
``transaction.timeout.ms``); a replacement producer inside one process gets a new id, since
the producer it replaces may still be alive in librdkafka."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from confluent_kafka import KafkaException
from conftest import settings_env

from plantstream.kafka import transactional_id
from plantstream.settings import Settings
from plantstream.topics import READINGS_NORMALIZED
from plantstream.txnguard import transactional_producer

from kafka_io import read_all

RESTARTED_COPY = "from plantstream.settings import Settings\n" \
                 "from plantstream.txnguard import transactional_producer\n" \
                 "transactional_producer(Settings.from_env(), 'ingest')\n"


def test_the_first_producer_of_a_copy_has_the_copys_id_and_replacements_a_new_one() -> None:
    s = replace(Settings.from_env(), topic_prefix="ids-test.", instance="ingest-1")
    assert [transactional_id(s, "ingest") for _ in range(3)] == [
        "ids-test.ingest-ingest-1", "ids-test.ingest-ingest-1.1", "ids-test.ingest-ingest-1.2"]
    assert transactional_id(replace(s, instance="ingest-2"), "ingest") == "ids-test.ingest-ingest-2"


@pytest.mark.integration
def test_a_restarted_copy_fences_its_predecessor_and_aborts_its_open_transaction(settings: Settings) -> None:
    topic = READINGS_NORMALIZED.physical(settings)
    predecessor = transactional_producer(settings, "ingest")
    predecessor.begin_transaction()
    predecessor.produce(topic, b"from the copy before the restart", b"k", partition=0)
    predecessor.flush(10)  # written, never committed: the copy is SIGKILLed here
    env = {**settings_env(settings), "PLANTSTREAM_INSTANCE": settings.instance}
    subprocess.run([sys.executable, "-c", RESTARTED_COPY], env=env, check=True, timeout=120)
    with pytest.raises(KafkaException) as fenced:
        predecessor.commit_transaction(30)
    assert fenced.value.args[0].fatal(), fenced.value.args[0]
    assert read_all(settings, topic) == []  # aborted: nothing of it is ever read
