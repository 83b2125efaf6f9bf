"""Produce gateway batches to their tenant's gateway topic (``gateway.readings.<tenant>``), as a
fleet of gateways would: one Kafka message per batch, keyed ``tenant/site/machine``, with the
contract's headers, optionally paced to the wall clock, counting what Kafka acknowledged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError
from opentelemetry import trace

from plantstream.errors import PlantstreamError
from plantstream.gateway.contract import encode_gateway_batch
from plantstream.kafka import Output, ReliableProducer
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers, root_span
from plantstream.topics import TENANT_GATEWAY_READINGS, machine_key

TimedBatches = Iterable[tuple[dict[str, Any], float | None]]


@dataclass
class SendReport:
    """What a send run did so far; ``acked`` counts batches Kafka acknowledged."""

    batches: int = 0
    readings: int = 0
    bytes: int = 0
    acked: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    interrupted: bool = False

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.batches} batches, {self.readings} readings, {self.bytes / 1e6:.1f} MB in "
                f"{self.seconds:.1f}s ({self.readings_per_s:,.0f} readings/s), {self.acked} acked")


def _tenant_topic(settings: Settings, producer: ReliableProducer, tenant: str) -> str:
    """``tenant``'s gateway topic, or a clear error when it is missing or not this login's."""
    try:
        topic = TENANT_GATEWAY_READINGS.for_tenant(settings, tenant)
    except ValueError as exc:
        raise PlantstreamError(str(exc)) from None
    error = producer.topic_error(topic)
    if error is None:
        return topic
    if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise PlantstreamError(f"login {settings.kafka_username!r} may not write {topic}: a gateway may only "
                               f"send its own tenant's batches (give it a login of tenant {tenant!r}: "
                               f"plantstream kafka add-gateway NAME --tenant {tenant})")
    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise PlantstreamError(f"{topic} does not exist: tenant {tenant!r} has no machines published; "
                               "`plantstream assets apply FILE` publishes them and creates its gateway topic")
    raise PlantstreamError(f"cannot write {topic}: {error.str()}")


def send_batches(settings: Settings, batches: TimedBatches, *, fmt: str = "avro",
                 progress: Callable[[SendReport], None] | None = None,
                 progress_every: float = 1.0, producer: ReliableProducer | None = None) -> SendReport:
    """Produce every batch; a batch with a due time (seconds after the first) waits for it.

    Returns once Kafka acknowledged everything (``flush`` raises otherwise). Ctrl-C stops
    producing new batches but still waits for those already produced, so the report's
    ``acked`` is exact."""
    producer = producer or ReliableProducer(settings)
    topics: dict[str, str] = {}  # tenant -> its gateway topic, the only one its gateways may write
    tracer = trace.get_tracer("plantstream.gateway")  # a no-op unless this process set up tracing
    report = SendReport()
    next_progress = report.started + progress_every
    try:
        for batch, due in batches:
            if due is not None:
                wait = report.started + due - time.monotonic()
                while wait > 0:  # serve delivery reports while waiting (poll returns early on one)
                    producer.poll(min(wait, 0.1))
                    wait = report.started + due - time.monotonic()
            value, headers = encode_gateway_batch(batch, fmt)
            tenant = batch["tenant"]
            if tenant not in topics:
                topics[tenant] = _tenant_topic(settings, producer, tenant)
            topic = topics[tenant]
            # the trace of this batch starts here (ingest starts it when nothing is injected)
            with root_span(tracer, "gateway.send", {
                    "plantstream.tenant": batch["tenant"], "plantstream.site": batch["site"],
                    "plantstream.machine": batch["machine"], "plantstream.batch_id": batch["batch_id"],
                    "plantstream.readings": len(batch["readings"]), "kafka.topic": topic}):
                producer.produce(Output(topic, machine_key(batch["tenant"], batch["site"], batch["machine"]),
                                        value, inject_headers(headers)))
            report.batches += 1
            report.readings += len(batch["readings"])
            report.bytes += len(value)
            now = time.monotonic()
            if progress is not None and now >= next_progress:
                producer.poll(0)
                report.acked = producer.tracker.delivered
                progress(report)
                next_progress = now + progress_every
    except KeyboardInterrupt:
        report.interrupted = True
    report.acked = producer.flush(60.0)
    report.finished = time.monotonic()
    if progress is not None:
        progress(report)
    return report
