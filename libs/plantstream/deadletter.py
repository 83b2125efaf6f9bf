"""Dead letters, built the same way by every stage.

A dead letter keeps what was rejected (the original bytes, cut to 1 MiB), why (a reason code
from the README's table and a sentence saying what to do), and where it came from (source
topic, partition, offset and item index), so it can be inspected, archived and replayed.
Its id ``topic:partition:offset:index`` is stable under redelivery; index ``-1`` means the
whole source message, ``0..n-1`` one item (reading) of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Message

from plantstream.avro import AvroCodec
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers
from plantstream.topics import READINGS_REJECTED, machine_key

MAX_ORIGINAL_BYTES = 1 << 20
WHOLE_MESSAGE = -1
UNKNOWN = "unknown"
# content types of per-reading originals (the whole-message original keeps the message's own)
CONTENT_TYPE_READING_AVRO = "application/vnd.plantstream.avro; record=plantstream.Reading"
CONTENT_TYPE_READING_JSON = "application/json; record=plantstream.GatewayReading"

Headers = Sequence[tuple[str, bytes | None]] | None


@dataclass(frozen=True)
class Source:
    """Where a rejected item came from: a consumed message (or its coordinates in a test)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Headers = None

    @classmethod
    def of(cls, msg: Message) -> Source:
        return cls(msg.topic(), msg.partition(), msg.offset(), msg.value(), msg.headers())


def content_type(headers: Headers) -> str | None:
    """The content-type header of a message (any common spelling), if present."""
    for k, v in headers or ():
        if v is not None and k.lower().replace("_", "-") == "content-type":
            return v.decode("utf-8", errors="replace")
    return None


class DeadLetters:
    """Builds dead-letter Outputs for one stage and counts them by reason."""

    def __init__(self, settings: Settings, stage: str, metrics: ServiceMetrics | None = None,
                 codec: AvroCodec | None = None) -> None:
        self.stage = stage
        self.topic = READINGS_REJECTED.physical(settings)
        self.metrics = metrics
        self.codec = codec or AvroCodec()

    def make(
        self,
        source: Source,
        reason: str,
        detail: str,
        *,
        index: int = WHOLE_MESSAGE,
        tenant: str | None = None,
        site: str | None = None,
        machine: str | None = None,
        sensor: str | None = None,
        ts: int | None = None,
        value: float | None = None,
        original: bytes | None = None,
        original_content_type: str | None = None,
        now_us: int | None = None,
    ) -> Output:
        """One dead letter. ``original`` defaults to the whole source message value."""
        if original is None:
            original = source.value or b""
            ctype = content_type(source.headers)
        else:
            ctype = original_content_type
        truncated = len(original) > MAX_ORIGINAL_BYTES
        tenant, site, machine = tenant or UNKNOWN, site or UNKNOWN, machine or UNKNOWN
        record = {
            "id": f"{source.topic}:{source.partition}:{source.offset}:{index}",
            "tenant": tenant, "site": site, "machine": machine,
            "stage": self.stage, "reason": reason, "detail": detail,
            "sensor": sensor, "ts": ts, "value": None if value is None else float(value),
            "source_topic": source.topic, "source_partition": source.partition,
            "source_offset": source.offset,
            "original": original[:MAX_ORIGINAL_BYTES] if truncated else original,
            "truncated": truncated, "content_type": ctype,
            "rejected_at": now_us if now_us is not None else time.time_ns() // 1000,
        }
        if self.metrics is not None:
            self.metrics.dead_letter(reason)
        key = machine_key(tenant, site, machine) if machine != UNKNOWN else b"unknown"
        return Output(self.topic, key, self.codec.encode("dead_letter", record), inject_headers())
