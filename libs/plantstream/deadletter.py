"""Dead letters, built the same way by every stage, after Kafka Connect's dead-letter convention.

A dead letter keeps what was rejected (the original value, key and headers), why (a reason
code from the README's table and a sentence saying what to do), and where it came from (source
topic, partition, offset and item index), so it can be inspected, archived and replayed
(``plantstream deadletters replay``). Its id ``topic:partition:offset:index`` is stable under
redelivery; index ``-1`` means the whole source message, ``0..n-1`` one item (reading) of it.

As in Kafka Connect, the dead-letter Kafka message is keyed by the original key (the machine
key when the original had none) and carries the error context as ``__connect.errors.*``
headers (plus ``__plantstream.errors.reason`` and ``.id``), so generic Kafka tools can read it
without decoding the Avro value.

Size: every dead letter fits ``PLANTSTREAM_DEAD_LETTER_MAX_BYTES`` (key + value + headers +
record framing), so Kafka never refuses one: a longer original is cut and flagged
``truncated``, keeping the whole original's length and SHA-256; if even the envelope is too
large (hostile ids, headers or key), those are cut too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from plantstream.avro import AvroCodec
from plantstream.errors import PlantstreamError
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers
from plantstream.topics import READINGS_REJECTED, machine_key

WHOLE_MESSAGE = -1
UNKNOWN = "unknown"
# content types of per-reading originals (the whole-message original keeps the message's own)
CONTENT_TYPE_READING_AVRO = "application/vnd.plantstream.avro; record=plantstream.Reading"
CONTENT_TYPE_READING_JSON = "application/json; record=plantstream.GatewayReading"

# Kafka Connect's error-context header names (org.apache.kafka.connect.runtime.errors.DeadLetterQueueReporter)
CONNECT_PREFIX = "__connect.errors."
HEADER_TOPIC = CONNECT_PREFIX + "topic"
HEADER_PARTITION = CONNECT_PREFIX + "partition"
HEADER_OFFSET = CONNECT_PREFIX + "offset"
HEADER_STAGE = CONNECT_PREFIX + "stage"
HEADER_EXCEPTION_CLASS = CONNECT_PREFIX + "exception.class.name"
HEADER_EXCEPTION_MESSAGE = CONNECT_PREFIX + "exception.message"
# ours, in the same style
OWN_PREFIX = "__plantstream.errors."
HEADER_REASON = OWN_PREFIX + "reason"
HEADER_ID = OWN_PREFIX + "id"
ERROR_HEADER_PREFIXES = (CONNECT_PREFIX, OWN_PREFIX)
HEADER_REPLAY_OF = "ps-replay-of"  # on a replayed original: the id of the dead letter it came from

RECORD_FRAMING_BYTES = 128  # Kafka record varints, attributes, timestamp delta, header counts
MAX_HEADER_MESSAGE_BYTES = 4096  # the exception-message header; the full detail is in the record
MAX_DETAIL_CHARS = 16_384
ENVELOPE_CUT_CHARS = 256  # ids cut to this when a hostile envelope alone would not fit

Headers = Sequence[tuple[str, bytes | None]] | None


@dataclass(frozen=True)
class Source:
    """Where a rejected item came from: a consumed message (or its coordinates in a test)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: Headers = None
    key: bytes | None = None

    @classmethod
    def of(cls, msg: Message) -> Source:
        return cls(msg.topic(), msg.partition(), msg.offset(), msg.value(), msg.headers(), msg.key())


def content_type(headers: Headers) -> str | None:
    """The content-type header of a message (any common spelling), if present."""
    for k, v in headers or ():
        if v is not None and k.lower().replace("_", "-") == "content-type":
            return v.decode("utf-8", errors="replace")
    return None


def _text(name: str) -> str:
    """``name`` as text Avro can write (a lone surrogate becomes a ``\\udxxx`` escape)."""
    return name.encode("utf-8", errors="backslashreplace").decode("utf-8")


def exception_class_name(exc: BaseException) -> str:
    """``module.Class`` (builtins bare), as Connect names the Java exception class."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def kafka_record_size(key: bytes | None, value: bytes | None,
                      headers: Sequence[tuple[str, bytes | None]]) -> int:
    """Bytes one Kafka record takes before compression, with a margin for its framing: what
    the producer's and the broker's message-size limits are compared with."""
    size = RECORD_FRAMING_BYTES + len(key or b"") + len(value or b"")
    return size + sum(len(k.encode()) + len(v or b"") + 10 for k, v in headers)


def error_headers(record: dict[str, Any], exception: BaseException | None) -> list[tuple[str, bytes]]:
    """The Connect-style error context of one dead-letter record."""
    message = record["detail"].encode("utf-8", errors="backslashreplace")[:MAX_HEADER_MESSAGE_BYTES]
    headers = [
        (HEADER_TOPIC, record["source_topic"].encode()),
        (HEADER_PARTITION, str(record["source_partition"]).encode()),
        (HEADER_OFFSET, str(record["source_offset"]).encode()),
        (HEADER_STAGE, record["stage"].encode()),
        (HEADER_REASON, record["reason"].encode("utf-8", errors="backslashreplace")),
        (HEADER_ID, record["id"].encode("utf-8", errors="backslashreplace")),
    ]
    if exception is not None:
        headers.append((HEADER_EXCEPTION_CLASS, exception_class_name(exception).encode()))
    headers.append((HEADER_EXCEPTION_MESSAGE, message))
    return headers


def replay_headers(original_headers: Headers, dead_letter_id: str) -> list[tuple[str, bytes | None]]:
    """The headers a replayed original is re-sent with: its own, in order, minus any error
    context and earlier replay mark, plus ``ps-replay-of: <dead-letter id>``."""
    kept = [(k, v) for k, v in original_headers or ()
            if not k.startswith(ERROR_HEADER_PREFIXES) and k != HEADER_REPLAY_OF]
    return [*kept, (HEADER_REPLAY_OF, dead_letter_id.encode())]


class DeadLetterTooLarge(PlantstreamError):
    """The size limit is too small for even a cut-down dead letter (a misconfiguration)."""


class DeadLetters:
    """Builds dead-letter Outputs for one stage and counts them by reason."""

    def __init__(self, settings: Settings, stage: str, metrics: ServiceMetrics | None = None,
                 codec: AvroCodec | None = None) -> None:
        self.stage = stage
        self.topic = READINGS_REJECTED.physical(settings)
        self.metrics = metrics
        self.codec = codec or AvroCodec()
        self.max_bytes = settings.dead_letter_max_bytes

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
        exception: BaseException | None = None,
        now_us: int | None = None,
    ) -> Output:
        """One dead letter. ``original`` defaults to the whole source message value;
        ``exception``, when the rejection is one, names its class in the error headers."""
        if original is None:
            original = source.value or b""
            ctype = content_type(source.headers)
        else:
            ctype = original_content_type
        tenant, site, machine = tenant or UNKNOWN, site or UNKNOWN, machine or UNKNOWN
        record: dict[str, Any] = {
            "id": f"{source.topic}:{source.partition}:{source.offset}:{index}",
            "tenant": tenant, "site": site, "machine": machine,
            "stage": self.stage, "reason": reason, "detail": detail[:MAX_DETAIL_CHARS],
            "sensor": sensor, "ts": ts, "value": None if value is None else float(value),
            "source_topic": source.topic, "source_partition": source.partition,
            "source_offset": source.offset,
            "original": original, "truncated": False, "content_type": ctype,
            "rejected_at": now_us if now_us is not None else time.time_ns() // 1000,
            "original_key": source.key,
            "original_headers": [{"key": _text(k), "value": v} for k, v in source.headers or ()],
            "original_length": len(original),
            "original_sha256": hashlib.sha256(original).hexdigest(),
        }
        if self.metrics is not None:
            self.metrics.dead_letter(reason)
        fallback_key = machine_key(tenant, site, machine) if machine != UNKNOWN else b"unknown"
        key = source.key if source.key is not None else fallback_key
        key, value_bytes, headers = self._fit(record, key, fallback_key, exception)
        return Output(self.topic, key, value_bytes, inject_headers(headers))

    def _fit(self, record: dict[str, Any], key: bytes, fallback_key: bytes,
             exception: BaseException | None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Encode ``record``, cutting the original (then, if need be, the envelope) so the Kafka
        record fits ``max_bytes``."""
        headers = error_headers(record, exception)
        value = self.codec.encode("dead_letter", record)
        over = kafka_record_size(key, value, headers) - self.max_bytes
        if over <= 0:
            return key, value, headers
        record["truncated"] = True
        original = record["original"]
        # the length prefix of 'original' shrinks with it, so cutting `over` bytes is enough
        record["original"] = original[:max(0, len(original) - over)]
        value = self.codec.encode("dead_letter", record)
        if kafka_record_size(key, value, headers) <= self.max_bytes:
            return key, value, headers
        # the envelope alone is too large: hostile ids, key or headers; keep a stub of each
        key = key if len(key) <= ENVELOPE_CUT_CHARS else fallback_key[:ENVELOPE_CUT_CHARS]
        record["original"] = b""
        record["original_key"] = (record["original_key"] or b"")[:ENVELOPE_CUT_CHARS] or None
        record["original_headers"] = []
        for name in ("tenant", "site", "machine", "sensor", "detail", "content_type"):
            if record[name] is not None:
                record[name] = record[name][:ENVELOPE_CUT_CHARS]
        headers = error_headers(record, exception)
        value = self.codec.encode("dead_letter", record)
        if kafka_record_size(key, value, headers) > self.max_bytes:
            raise DeadLetterTooLarge(
                f"PLANTSTREAM_DEAD_LETTER_MAX_BYTES={self.max_bytes} cannot hold even a cut-down dead "
                f"letter ({kafka_record_size(key, value, headers)} bytes); raise it (e.g. to 1000000)")
        return key, value, headers
