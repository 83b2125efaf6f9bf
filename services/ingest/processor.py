"""The ingest Processor: a batch of gateway messages -> normalized batches, dead letters and
the dedup changelog, all committed in one Kafka transaction by ``run_processor``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import Message, TopicPartition
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
from plantstream.telemetry import extract_context
from plantstream.topics import GATEWAY_READINGS, READINGS_NORMALIZED


class IngestProcessor(Processor):
    name = "ingest"

    def __init__(self, settings: Settings, registry: AssetRegistry, tracer: Tracer,
                 metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics(self.name)
        self.tracer = tracer
        self.input_topic = GATEWAY_READINGS.physical(settings)
        self.seen = SeenBatches(settings)
        self.normalizer = Normalizer(registry, self.seen, DeadLetters(settings, "ingest", self.metrics),
                                     READINGS_NORMALIZED.physical(settings),
                                     GatewayLimits.from_settings(settings))

    def process(self, messages: Sequence[Message]) -> list[Output]:
        now_us = time.time_ns() // 1000
        outs: list[Output] = []
        normalize = self.normalizer.normalize
        for msg in messages:
            src = Source.of(msg)
            with self.tracer.start_as_current_span(
                    "ingest.batch", context=extract_context(src.headers),
                    attributes={"kafka.partition": src.partition, "kafka.offset": src.offset}):
                outs.extend(normalize(src, now_us))
        outs.extend(self.seen.changelog(now_us))
        return outs

    def committed(self) -> None:
        self.seen.committed()

    def aborted(self) -> None:
        self.seen.aborted()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self.seen.rebuild([p.partition for p in partitions if p.topic == self.input_topic])

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self.seen.revoke([p.partition for p in partitions if p.topic == self.input_topic])
