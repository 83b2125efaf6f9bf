"""The faust-streaming app: ``alerts`` in, ``notifications`` out, the alerts it follows in the
table ``open-alerts`` (changelog ``<prefix>notifier-open-alerts-changelog``, from the catalog).

Why faust here: the notifier's work is I/O (HTTP, SMTP) with retries, many deliveries at
once, and timers (grouping windows, escalation, reminders, quiet hours) over a table of open
alerts: what faust's asyncio agents, timers and tables are for. It derives no records for
other services, so it needs none of the transactional loop the stream processors run on.

How the pieces fit (at-least-once, stable ids so receivers and the archive de-duplicate):
- The agent applies every alert revision to the table (:mod:`notifier.tracking`); a revision
  with the ``plantstream-notify`` header records a *pending* notification. The table is the
  outbox: nothing is sent from the agent.
- A timer every PLANTSTREAM_NOTIFY_TICK_SECONDS lets escalation and reminders add pending
  notifications (:func:`notifier.schedule.decide`), picks what is due (grouping window over,
  quiet hours not holding it) and starts one delivery task per group, at most
  ``DELIVERY_CONCURRENCY`` at a time; each task clears the pending notifications it
  delivered. A crash before that re-sends them with the same keys.
- Input is read ``read_committed`` through :class:`plantstream.faustkafka.App`, whose consumer
  commits past the transaction markers maintenance's transactional producer leaves.
- Unreadable records on ``alerts`` are dead-lettered to ``readings.rejected``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from opentelemetry import trace
from opentelemetry.trace import Tracer

from notifier.schedule import decide, due_groups, item
from notifier.table import PinnedTable
from notifier.tracking import Tracked, TrackedCodec, mark_sent, on_revision
from plantstream import faustkafka
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import faust_credentials, faust_group_options
from plantstream.lag import data_messages_between
from plantstream.metrics import ServiceMetrics
from plantstream.notify import Notifier, NotifyConfig
from plantstream.settings import Settings
from plantstream.telemetry import inject_headers, kafka_attributes, key_attributes, message_span
from plantstream.topics import ALERTS, NOTIFICATIONS, NOTIFIER_OPEN_ALERTS, READINGS_REJECTED

log = logging.getLogger(__name__)

SERVICE = "notifier"
TABLE = "open-alerts"
NOTIFY_HEADER = "plantstream-notify"
DELIVERY_CONCURRENCY = 8
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class Runtime:
    """What the app needs besides settings (built by ``service.py``, replaceable in tests)."""

    notify: NotifyConfig
    metrics: ServiceMetrics
    codec: AvroCodec
    tracer: Tracer | None = None


def app_id(settings: Settings) -> str:
    """The consumer group and faust app id."""
    return settings.topic_prefix + SERVICE


def now_us() -> int:
    return time.time_ns() // 1000


def build_app(settings: Settings, rt: Runtime) -> faust.App:
    datadir = settings.home / SERVICE / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faustkafka.App(  # faust.App, fixed for transactional (gapped) input topics
        app_id(settings),
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",") if hp.strip()],
        broker_credentials=faust_credentials(settings),
        datadir=str(datadir),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # every topic comes from the catalog (broker auto-creation is off)
        topic_disable_leader=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        **faust_group_options(settings),
        producer_acks=-1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    source_topic = ALERTS.physical(settings)
    alerts = app.topic(source_topic, **RAW)
    faustkafka.keep_commits_moving(  # so the group reaches the log end (see there)
        app, source_topic, lambda t, p, start, end: data_messages_between(settings, t, p, start, end))
    notifications = app.topic(NOTIFICATIONS.physical(settings), **RAW)
    rejected = app.topic(READINGS_REJECTED.physical(settings), **RAW)
    changelog = app.topic(NOTIFIER_OPEN_ALERTS.physical(settings), partitions=settings.partitions,
                          compacting=True, internal=True, **RAW)
    table = PinnedTable(app, name=TABLE, default=None, partitions=settings.partitions,
                        changelog_topic=changelog, key_type=bytes, value_type=bytes)
    app.tables.add(table)
    codec = TrackedCodec(rt.codec)
    dead = DeadLetters(settings, SERVICE, rt.metrics, rt.codec)
    tracer = rt.tracer or trace.get_tracer("plantstream.notifier")
    lock = asyncio.Lock()  # table read-modify-write: the agent, the timer, delivery tasks
    slots = asyncio.Semaphore(DELIVERY_CONCURRENCY)
    in_flight: set[str] = set()  # pending keys being delivered right now
    tasks: set[asyncio.Task[None]] = set()
    ready: list[bool] = []

    async def publish_attempt(record: dict[str, Any]) -> None:
        value = rt.codec.encode("notification_attempt", record)
        fut = await notifications.send(key=record["alert_id"].encode(), value=value, headers=inject_headers())
        await fut
        log.info("notification attempt", extra={k: record[k] for k in ("attempt_id", "outcome", "detail")})

    notifier = Notifier(rt.notify, publish=publish_attempt)

    def load(key: bytes) -> Tracked | None:
        raw = table.get(key)
        return codec.decode(raw) if raw else None

    def store(key: bytes, before: Tracked | None, after: Tracked | None) -> None:
        if after == before:
            return
        if after is None:
            assert before is not None
            with table.pinned(before.partition):
                del table[key]
        else:
            with table.pinned(after.partition):
                table[key] = codec.encode(after)

    def owned() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == source_topic}

    def entries(parts: set[int]) -> Iterator[tuple[bytes, Tracked]]:
        for key in list(table.keys()):
            entry = load(key)
            if entry is not None and entry.partition in parts:
                yield key, entry

    async def reject(msg: Any, exc: DecodeError) -> None:
        headers = list(msg.headers.items()) if isinstance(msg.headers, dict) else msg.headers
        src = Source(msg.topic, msg.partition, msg.offset, msg.value, headers)
        out = dead.make(src, exc.reason, f"notifier cannot read this alert_event: {exc.detail}")
        log.warning("input rejected", extra={"reason": exc.reason, "topic": msg.topic, "offset": msg.offset})
        await rejected.send(key=out.key, value=out.value, partition=msg.partition, headers=out.headers)

    @app.agent(alerts, name="alerts")
    async def follow(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            t0 = time.perf_counter()
            attrs = kafka_attributes(msg.topic, msg.partition, msg.offset) | key_attributes(msg.key)
            with message_span(tracer, "notifier.follow", msg.headers, attrs):
                try:
                    alert = rt.codec.decode(msg.value or b"", "alert_event")
                except DecodeError as exc:
                    await reject(msg, exc)
                    continue
                reason = header(msg.headers, NOTIFY_HEADER)
                key = alert["alert_id"].encode()
                async with lock:
                    before = load(key)
                    after = on_revision(before, alert, reason, msg.partition, now_us())
                    store(key, before, after)
                was = before.pending_key if before else None
                if after is not None and after.pending_key and after.pending_key != was:
                    log.info("notification pending", extra={"alert_id": alert["alert_id"],
                                                            "reason": after.pending_reason})
            rt.metrics.batch(1, [], time.perf_counter() - t0)

    async def deliver(group: list[tuple[bytes, Tracked]]) -> None:
        try:
            async with slots:
                items = [item(e) for _, e in group]
                with tracer.start_as_current_span("notifier.deliver", attributes={
                        "plantstream.alerts": len(items), "plantstream.reason": items[0].reason}):
                    await notifier.deliver(items)
            async with lock:
                parts, now = owned(), now_us()
                for key, sent in group:
                    before = load(key)
                    if before is not None and before.partition in parts and sent.pending_key:
                        store(key, before, mark_sent(before, sent.pending_key, now))
        except Exception:  # a bug must not kill the timer; the pending stays and is retried
            log.exception("delivery task failed", extra={"alerts": [e.alert_id for _, e in group]})
        finally:
            for _, e in group:
                in_flight.discard(e.pending_key or "")

    @app.timer(settings.notify_tick_seconds, name="notifier.tick")
    async def tick() -> None:
        if app.in_recovery or app.rebalancing:
            return
        parts = owned()
        if parts and not ready:
            ready.append(True)
            log.info("ready", extra={"partitions": sorted(parts), "alerts": len(table)})
        async with lock:
            now = now_us()
            current = []
            for key, entry in entries(parts):
                after = decide(entry, now, rt.notify)
                store(key, entry, after)
                current.append((key, after))
            groups = due_groups(current, now, rt.notify, in_flight)
            rt.metrics.open_alerts(SERVICE, len(current))
        for group in groups:
            in_flight.update(e.pending_key for _, e in group if e.pending_key)
            task = asyncio.ensure_future(deliver(group))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[TP], **_: Any) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]"
                                                                    for tp in assigned)})

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]"
                                                                   for tp in revoked)})

    @app.on_before_shutdown.connect
    async def on_shutdown(app: faust.App, **_: Any) -> None:
        # Deliveries still running are given a moment; what they do not finish stays pending
        # in the table and the next owner sends it (same keys, so receivers de-duplicate).
        if tasks:
            await asyncio.wait(set(tasks), timeout=5)

    return app


def header(headers: Any, name: str) -> str | None:
    """A header's value as text (faust hands headers over as a dict or a list of pairs)."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for k, v in items:
        if k == name and v is not None:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None
