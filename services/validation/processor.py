"""The validation Processor: normalized batches -> valid batches and dead letters; the loop
commits them with the order-state store's changes in one Kafka transaction.

A batch whose readings all pass is forwarded byte for byte; otherwise the valid readings'
bytes are copied into a smaller batch (no re-encoding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import Message
from opentelemetry.trace import Tracer

from plantstream.assets import AssetRegistry, RegistryView
from plantstream.deadletter import CONTENT_TYPE_READING_AVRO, DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.readingbatch import ReadingBatchView, decode_readings
from plantstream.runner import Processor
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers, kafka_attributes, message_span, set_attributes
from plantstream.topics import READINGS_NORMALIZED, READINGS_VALID, machine_key
from validation.checks import REASONS, SensorTable, check_batch, explain, sensor_table
from validation.state import SensorClock


class ValidationProcessor(Processor):
    name = "validation"

    def __init__(self, settings: Settings, registry: AssetRegistry, tracer: Tracer,
                 metrics: ServiceMetrics | None = None) -> None:
        self.metrics = metrics or ServiceMetrics(self.name)
        self.registry = registry
        self.tracer = tracer
        self.input_topic = READINGS_NORMALIZED.physical(settings)
        self.out_topic = READINGS_VALID.physical(settings)
        self.dead = DeadLetters(settings, "validation", self.metrics)
        self.clock = SensorClock(settings)
        self.stores = (self.clock.store,)
        self.future_us = int(settings.future_tolerance_s * 1e6)
        self.stale_us = int(settings.stale_after_s * 1e6)
        self._tables = RegistryView(registry, sensor_table)

    def process(self, messages: Sequence[Message]) -> list[Output]:
        now_us = time.time_ns() // 1000
        outs: list[Output] = []
        for msg in messages:
            src = Source.of(msg)
            with message_span(self.tracer, "validation.batch", src.headers,
                              kafka_attributes(src.topic, src.partition, src.offset)):
                self._validate(src, now_us, outs)
        return outs

    def _validate(self, src: Source, now_us: int, outs: list[Output]) -> None:
        try:
            view = decode_readings(src.value or b"")
        except DecodeError as exc:
            outs.append(self.dead.make(src, exc.reason, exc.detail, now_us=now_us))
            return
        mid = (view.tenant, view.site, view.machine)
        set_attributes({"plantstream.tenant": view.tenant, "plantstream.site": view.site,
                        "plantstream.machine": view.machine, "plantstream.batch_id": view.batch_id,
                        "plantstream.readings": len(view)})
        who = {"tenant": view.tenant, "site": view.site, "machine": view.machine, "now_us": now_us}
        table = self._tables.get(mid)
        if table is None:
            outs.append(self.dead.make(src, "unknown_machine",
                                       f"machine {'/'.join(mid)} is no longer in the asset registry; "
                                       "re-add it and replay", **who))
            return
        last_ts = self.clock.working(src.partition, mid)
        verdict = check_batch(view, table, last_ts, self.future_us, self.stale_us)
        for i, code in verdict.rejected:
            outs.append(self._reading_dead(src, view, i, code, table, last_ts, who))
        if verdict.keep:
            outs.append(Output(self.out_topic, machine_key(*mid), view.subset(verdict.keep),
                               inject_headers()))

    def _reading_dead(self, src: Source, view: ReadingBatchView, i: int, code: int, table: SensorTable,
                      last_ts: dict[bytes, int], who: dict) -> Output:
        detail = f"{view.reading_id(i)}: " + explain(code, view, i, table, last_ts, self.future_us,
                                                     self.stale_us)
        return self.dead.make(src, REASONS[code], detail, index=i,
                              sensor=view.sensors[i].decode("utf-8", errors="replace"),
                              ts=int(view.ts[i]), value=float(view.values[i]),
                              original=view.reading_bytes(i),
                              original_content_type=CONTENT_TYPE_READING_AVRO, **who)
