"""Decoded Avro records -> columns of the archive tables.

Rows are gathered column by column (lists per column) and turned into one Arrow table per
insert: Arrow inserts are several times faster than row lists on ClickHouse. Each table's
Arrow schema is spelled out here, in the column order of the migration, so a mismatch fails
loudly in the tests rather than silently casting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

from plantstream.errors import PlantstreamError
from plantstream.topics import consumed_by

# DateTime64(6) holds 1900-01-01 .. 2299-12-31; anything outside cannot be stored.
MIN_TS_US = -2_208_988_800_000_000
MAX_TS_US = 10_413_791_999_999_999
MAX_ORIGINAL_BYTES = 1 << 20
SERVICE = "archival"

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()


def _schema(*cols: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, typ) for name, typ in cols])


_KAFKA = (("kafka_partition", pa.uint16()), ("kafka_offset", pa.uint64()))

ARROW_SCHEMAS: dict[str, pa.Schema] = {
    "readings": _schema(
        ("tenant", STR), ("site", STR), ("machine", STR), ("sensor", STR), ("ts", TS),
        ("value", pa.float64()), ("unit", STR), ("quality", pa.int32()), ("reading_id", STR),
        ("gateway", STR), ("ingest_time", TS), *_KAFKA, ("kafka_run_first", pa.int64())),
    "rejected": _schema(
        ("id", STR), ("tenant", STR), ("site", STR), ("machine", STR), ("stage", STR), ("reason", STR),
        ("detail", STR), ("sensor", STR), ("ts", TS), ("value", pa.float64()), ("source_topic", STR),
        ("source_partition", pa.int32()), ("source_offset", pa.int64()), ("original", pa.binary()),
        ("truncated", pa.bool_()), ("content_type", STR), ("rejected_at", TS), ("kafka_topic", STR), *_KAFKA,
        ("original_key", pa.binary()), ("original_header_keys", pa.list_(STR)),
        ("original_header_values", pa.list_(pa.binary())), ("original_length", pa.int64()),
        ("original_sha256", STR)),
    "anomalies": _schema(
        ("event_id", STR), ("tenant", STR), ("site", STR), ("machine", STR), ("ts", TS),
        ("window_start", TS), ("window_end", TS), ("score", pa.float64()), ("threshold", pa.float64()),
        ("kind", STR), ("model", STR), ("model_version", STR), ("sensors", pa.list_(STR)),
        ("shares", pa.list_(pa.float64())), ("sensor_values", pa.list_(pa.float64())), *_KAFKA),
    "alerts": _schema(
        ("alert_id", STR), ("revision", pa.int32()), ("tenant", STR), ("site", STR), ("machine", STR),
        ("sensors", pa.list_(STR)), ("rule", STR), ("severity", STR), ("state", STR), ("title", STR),
        ("first_seen", TS), ("last_seen", TS), ("occurrences", pa.int32()), ("escalation_level", pa.int32()),
        ("evidence", pa.map_(STR, pa.float64())), ("recommended_action", STR), ("actor", STR),
        ("note", STR), ("silenced_until", TS), ("updated_at", TS), *_KAFKA),
    "notifications": _schema(
        ("attempt_id", STR), ("alert_id", STR), ("revision", pa.int32()), ("tenant", STR), ("site", STR),
        ("machine", STR), ("channel", STR), ("target", STR), ("attempt", pa.int32()), ("outcome", STR),
        ("detail", STR), ("escalation_level", pa.int32()), ("attempted_at", TS), *_KAFKA),
}


class Source(NamedTuple):
    """Where a Kafka message came from, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    content_type: str | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class Unarchivable(PlantstreamError):
    """A record decoded but cannot be stored (e.g. a timestamp outside DateTime64's range);
    it is archived as a dead letter instead, with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Columns:
    """Rows of one table gathered column by column."""

    table: str
    data: dict[str, list[Any]] = field(default_factory=dict)
    rows: int = 0

    def __post_init__(self) -> None:
        if not self.data:
            self.data = {name: [] for name in ARROW_SCHEMAS[self.table].names}

    def to_arrow(self, constants: dict[str, Any] | None = None) -> pa.Table:
        """One Arrow table; a column named in ``constants`` holds that value in every row."""
        schema = ARROW_SCHEMAS[self.table]
        constants = constants or {}
        return pa.Table.from_arrays(
            [pa.array([constants[f.name]] * self.rows if f.name in constants else self.data[f.name],
                      type=f.type) for f in schema], schema=schema)


def check_ts(us: int | None, what: str) -> None:
    if us is not None and not MIN_TS_US <= us <= MAX_TS_US:
        raise Unarchivable("timestamp_out_of_range",
                           f"{what}={us} µs is outside 1900..2299, which ClickHouse DateTime64 can store")


def month_of(us: int) -> int:
    """yyyymm of a UTC timestamp in µs: the table partition a row lands in."""
    d = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)
    return d.year * 100 + d.month


def _add_kafka(c: Columns, src: Source, n: int) -> None:
    c.data["kafka_partition"].extend([src.partition] * n)
    c.data["kafka_offset"].extend([src.offset] * n)
    c.rows += n


def readings_month(rec: dict[str, Any]) -> int:
    check_ts(rec["ingest_time"], "ingest_time")
    readings = rec["readings"]
    if readings:
        stamps = [r["ts"] for r in readings]
        check_ts(min(stamps), "reading ts")
        check_ts(max(stamps), "reading ts")
    return month_of(rec["ingest_time"])


def append_readings(c: Columns, rec: dict[str, Any], src: Source) -> None:
    readings = rec["readings"]
    n = len(readings)
    d = c.data
    for col in ("tenant", "site", "machine", "gateway", "ingest_time"):
        d[col].extend([rec[col]] * n)
    d["sensor"].extend([r["sensor"] for r in readings])
    d["ts"].extend([r["ts"] for r in readings])
    d["value"].extend([r["value"] for r in readings])
    d["unit"].extend([r["unit"] for r in readings])
    d["quality"].extend([r["quality"] for r in readings])
    d["reading_id"].extend([r["reading_id"] for r in readings])
    _add_kafka(c, src, n)


def append_row(c: Columns, row: dict[str, Any], src: Source) -> None:
    for name, values in c.data.items():
        if name not in ("kafka_partition", "kafka_offset"):
            values.append(row.get(name))
    _add_kafka(c, src, 1)


def _event_month(time_field: str, *others: str) -> Callable[[dict[str, Any]], int]:
    def month(rec: dict[str, Any]) -> int:
        for name in (time_field, *others):
            check_ts(rec.get(name), name)
        return month_of(rec[time_field])
    return month


def append_anomaly(c: Columns, rec: dict[str, Any], src: Source) -> None:
    contributions = rec["contributions"]
    row = dict(rec)
    row["sensors"] = [x["sensor"] for x in contributions]
    row["shares"] = [x["share"] for x in contributions]
    row["sensor_values"] = [x.get("value") for x in contributions]
    append_row(c, row, src)


def append_alert(c: Columns, rec: dict[str, Any], src: Source) -> None:
    row = dict(rec)
    row["evidence"] = list(rec["evidence"].items())
    append_row(c, row, src)


def append_notification(c: Columns, rec: dict[str, Any], src: Source) -> None:
    append_row(c, rec, src)


def dead_letter_month(rec: dict[str, Any]) -> int:
    check_ts(rec["rejected_at"], "rejected_at")
    return month_of(rec["rejected_at"])


def append_dead_letter(c: Columns, rec: dict[str, Any], src: Source) -> None:
    row = dict(rec)
    ts = rec.get("ts")
    if ts is not None and not MIN_TS_US <= ts <= MAX_TS_US:
        row["ts"] = None  # an absurd timestamp is often why it was rejected; detail/original keep it
    row["kafka_topic"] = src.topic
    headers = rec.get("original_headers") or []  # a v2 record; v1 records read as v2 have []
    row["original_header_keys"] = [h["key"] for h in headers]
    row["original_header_values"] = [h["value"] for h in headers]
    append_row(c, row, src)


def poison_row(src: Source, reason: str, detail: str, now_us: int) -> dict[str, Any]:
    """A dead-letter record for a message archival itself cannot store (a ClickHouse row, not
    a Kafka record, so the 1 MiB cut is only there to keep one row reasonable)."""
    parts = (src.key or b"").decode("utf-8", "replace").split("/")
    tenant, site, machine = parts if len(parts) == 3 else ("unknown", "unknown", "unknown")
    original = src.value or b""
    headers = src.headers or ()
    return {
        "original_key": src.key, "original_header_keys": [k for k, _ in headers],
        "original_header_values": [v for _, v in headers], "original_length": len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "id": f"{src.topic}:{src.partition}:{src.offset}", "tenant": tenant, "site": site,
        "machine": machine, "stage": "archival", "reason": reason, "detail": detail, "sensor": None,
        "ts": None, "value": None, "source_topic": src.topic, "source_partition": src.partition,
        "source_offset": src.offset, "original": original[:MAX_ORIGINAL_BYTES],
        "truncated": len(original) > MAX_ORIGINAL_BYTES, "content_type": src.content_type,
        "rejected_at": now_us, "kafka_topic": src.topic,
    }


@dataclass(frozen=True)
class Route:
    """How one topic is archived: its Avro schema, its table, the month a record lands in
    (which also checks that it can be stored) and how it becomes columns."""

    topic: str  # logical catalog name
    schema: str
    table: str
    month: Callable[[dict[str, Any]], int]
    append: Callable[[Columns, dict[str, Any], Source], None]


class Mapping(NamedTuple):
    """Where the records of one topic go: the table, and how a record becomes its columns."""

    table: str
    month: Callable[[dict[str, Any]], int]
    append: Callable[[Columns, dict[str, Any], Source], None]


#: Per topic (logical catalog name): its table. Which topics archival reads is the catalog's
#: business (``consumers`` naming archival); the tests check that the two agree.
TABLES: dict[str, Mapping] = {
    "readings.valid": Mapping("readings", readings_month, append_readings),
    "readings.rejected": Mapping("rejected", dead_letter_month, append_dead_letter),
    "anomalies": Mapping("anomalies", _event_month("ts", "window_start", "window_end"), append_anomaly),
    "alerts": Mapping("alerts", _event_month("updated_at", "first_seen", "last_seen", "silenced_until"),
                      append_alert),
    "notifications": Mapping("notifications", _event_month("attempted_at"), append_notification),
}


def routes() -> tuple[Route, ...]:
    """One route per topic the catalog has archival read, with the schema the catalog names."""
    missing = [spec.name for spec in consumed_by(SERVICE) if spec.name not in TABLES]
    if missing:
        raise PlantstreamError(f"the topic catalog has archival read {', '.join(missing)}, "
                               "but archival.tables.TABLES maps no table for it")
    return tuple(Route(spec.name, spec.schema, *TABLES[spec.name]) for spec in consumed_by(SERVICE))


ROUTES: tuple[Route, ...] = routes()
