"""Lag is read from Kafka: messages not yet committed by a service's group."""

from __future__ import annotations

from confluent_kafka import Consumer

from plantstream.kafka import Output, consumer_config, next_offsets
from plantstream.lag import group_lags
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS

from kafka_io import produce_all


def test_lag_counts_uncommitted_messages_of_the_service_group(settings: Settings) -> None:
    topic = GATEWAY_READINGS.physical(settings)
    produce_all(settings, [Output(topic, str(i % 3).encode(), b"x") for i in range(30)])
    ingest = {g.service: g for g in group_lags(settings)}["ingest"]
    assert (ingest.end, ingest.lag) == (30, 30)

    consumer = Consumer(consumer_config(settings, "ingest"))
    consumer.subscribe([topic])
    got = []
    while len(got) < 20:
        got.extend(m for m in consumer.consume(20 - len(got), 1.0) if m.error() is None)
    consumer.commit(offsets=next_offsets(got), asynchronous=False)
    consumer.close()
    ingest = {g.service: g for g in group_lags(settings)}["ingest"]
    assert ingest.lag == 10
