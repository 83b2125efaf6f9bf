"""The ingest Processor: a batch of gateway messages -> normalized batches and dead letters;
the loop commits them with the dedup store's changes in one Kafka transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import Message
from opentelemetry.trace import Tracer

from ingest.dedup import SeenBatches
from ingest.normalize import Normalizer
from plantstream.assets import AssetRegistry
from plantstream.deadletter import DeadLetters, Source
from plantstream.gateway.contract import GatewayLimits
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.runner import Processor
from plantstream.settings import Settings
from plantstream.telemetry import (
    batch_attributes,
    kafka_attributes,
    key_attributes,
    message_span,
    set_attributes,
)
from plantstream.topics import READINGS_NORMALIZED, TENANT_GATEWAY_READINGS


class IngestProcessor(Processor):
    name = "ingest"

    def __init__(self, settings: Settings, registry: AssetRegistry, tracer: Tracer,
                 metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics(self.name)
        self.tracer = tracer
        self.seen = SeenBatches(settings)
        self.stores = (self.seen.store,)
        senders: dict[str, str | None] = {}  # topic -> the tenant whose gateways write it

        def sender_tenant(topic: str) -> str | None:
            if topic not in senders:
                senders[topic] = TENANT_GATEWAY_READINGS.tenant_of(settings, topic)
            return senders[topic]

        self.normalizer = Normalizer(registry, self.seen, DeadLetters(settings, "ingest", self.metrics),
                                     READINGS_NORMALIZED.physical(settings),
                                     GatewayLimits.from_settings(settings), sender_tenant)

    def process(self, messages: Sequence[Message]) -> list[Output]:
        now_us = time.time_ns() // 1000
        outs: list[Output] = []
        normalize = self.normalizer.normalize
        out_topic = self.normalizer.out_topic
        for msg in messages:
            src = Source.of(msg)
            with message_span(self.tracer, "ingest.batch", src.headers,
                              kafka_attributes(src.topic, src.partition, src.offset)
                              | key_attributes(msg.key())):
                produced = normalize(src, now_us, key=msg.key())
                for out in produced:
                    if out.topic == out_topic:  # batch id and readings kept, from the output's header
                        set_attributes(batch_attributes(out.value))
                outs.extend(produced)
        self.seen.expire(now_us)
        return outs
