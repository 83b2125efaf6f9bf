"""The anomaly Processor: readings.valid batches in, anomaly events out, every machine's
detector in the service's PartitionStore, all committed in one Kafka transaction by the
loop. So after a crash the events after the restart are exactly those a never-crashed run
would have produced: the detectors resume from the state that matches the committed input
offsets, and no event is written twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message
from opentelemetry.trace import Tracer

from anomaly.config import detector_factory, scorer_config
from anomaly.metrics import export_memory
from anomaly.scorer import Outcome, Scorer
from plantstream.assets import AssetRegistry
from plantstream.deadletter import DeadLetters
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.runner import Processor
from plantstream.settings import Settings
from plantstream.telemetry import batch_attributes, inject_headers, kafka_attributes, message_span
from plantstream.topics import ANOMALIES, READINGS_VALID

log = logging.getLogger(__name__)

MEMORY_REPORT_S = 30.0


class AnomalyProcessor(Processor):
    name = "anomaly"

    def __init__(self, settings: Settings, registry: AssetRegistry, tracer: Tracer,
                 metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics(self.name)
        self.tracer = tracer
        self.out_topic = ANOMALIES.physical(settings)
        dead = DeadLetters(settings, self.name, self.metrics)
        self.scorer = Scorer(detector_factory(settings), scorer_config(settings), dead,
                             READINGS_VALID.physical(settings), settings, registry=registry)
        self.stores = (self.scorer.store,)
        self._reported = time.monotonic()

    def process(self, messages: Sequence[Message]) -> list[Output]:
        outs: list[Output] = []
        scorer = self.scorer
        for msg in messages:
            value = msg.value()
            with message_span(self.tracer, "anomaly.score", msg.headers(),
                              kafka_attributes(msg.topic(), msg.partition(), msg.offset())
                              | batch_attributes(value)) as span:
                try:
                    out = scorer.handle(msg.key(), value, msg.partition(), msg.offset())
                except Exception as exc:  # a bug must not stop the machine's stream: dead-letter it
                    log.exception("scoring failed; message dead-lettered",
                                  extra={"partition": msg.partition(), "offset": msg.offset()})
                    out = scorer.failed(value, msg.partition(), msg.offset(), exc)
                self._emit(out, msg, span, outs)
        if time.monotonic() - self._reported >= MEMORY_REPORT_S:
            self._reported = time.monotonic()
            self.report_memory()
        return outs

    def _emit(self, out: Outcome, msg: Message, span: Any, outs: list[Output]) -> None:
        if out.events:
            span.set_attribute("plantstream.anomaly_events", len(out.events))
            headers = inject_headers()
            outs.extend(Output(self.out_topic, out.key or msg.key(), v, headers) for v in out.events)
        if out.dead_letter is not None:
            outs.append(out.dead_letter)

    def report_memory(self) -> dict[str, Any]:
        """Log and export per-machine model memory (snapshot bytes)."""
        rep = self.scorer.memory_report()
        export_memory(rep)
        log.info("model memory", extra=rep)
        return rep
