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


def test_consumer_group_command_output_is_parsed() -> None:
    from plantstream.lag import parse_group_describe

    header = "GROUP  TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID"
    text = "\n".join([
        "Consumer group 'p.anomaly' has no active members.", "", header,
        "p.anomaly   p.readings.valid  0  1319  1319  0    -  -  -",
        "p.anomaly   p.readings.valid  1  761   1319  558  -  -  -",
        "p.notifier  p.alerts          2  -     0     -    -  -  -"])
    rows = parse_group_describe(text)
    assert [(r.group, r.partition, r.committed, r.end, r.at_end) for r in rows] == [
        ("p.anomaly", 0, 1319, 1319, True), ("p.anomaly", 1, 761, 1319, False),
        ("p.notifier", 2, None, 0, True)]
