"""The faust-streaming app: readings.valid, anomalies and alert.commands in (one agent, so
one machine's inputs are applied in order), alerts and notifications out, state in the table
``machines`` (changelog ``<prefix>maintenance-machines-changelog``, from the topic catalog).

Delivery guarantees (faust is at-least-once; ``plantstream.faustkafka.App`` reads committed
records only and commits past the upstream transactions' markers):
- State updates are idempotent: each machine remembers the last offset applied per input
  topic and skips redelivered input.
- Alert revisions are full snapshots identified by (alert_id, revision); they are sent and
  acknowledged by Kafka *before* the new state is written, so a crash re-emits the same
  revision (a duplicate consumers drop) rather than losing it.
- Notifications are delivered by a second agent reading the alerts topic; its offsets are
  committed only after delivery finished, so a crash re-delivers (attempt ids and the webhook
  Idempotency-Key are stable, so receivers and the archive can de-duplicate).
- Timers (no data, auto-resolve, escalation, reminders) run every PLANTSTREAM_ALERT_TICK_SECONDS
  over the machines of the partitions this copy owns, under the same lock as the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from opentelemetry import trace
from opentelemetry.trace import Tracer

from maintenance.lifecycle import Emission, Policy
from maintenance.machine import MachineState, RuleSet
from maintenance.table import MachineTable
from plantstream import faustkafka
from plantstream.alertstate import InvalidCommand
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import Output, faust_group_options
from plantstream.metrics import ServiceMetrics
from plantstream.notify import Notifier, NotifyConfig
from plantstream.settings import Settings
from plantstream.telemetry import (
    batch_attributes,
    inject_headers,
    kafka_attributes,
    key_attributes,
    message_span,
)
from plantstream.topics import (
    ALERT_COMMANDS,
    ALERTS,
    ANOMALIES,
    MAINTENANCE_MACHINES,
    NOTIFICATIONS,
    READINGS_REJECTED,
    READINGS_VALID,
    machine_key,
)

log = logging.getLogger(__name__)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
NOTIFY_HEADER = "plantstream-notify"
NOTIFY_CONCURRENCY = 8


@dataclass
class Runtime:
    """What the app needs besides settings (built by ``service.py``, replaceable in tests)."""

    registry: AssetRegistry
    rules: RuleSet
    policy: Policy
    notify: NotifyConfig
    metrics: ServiceMetrics
    codec: AvroCodec
    tracer: Tracer | None = None


def app_id(settings: Settings) -> str:
    return settings.topic_prefix + "maintenance"


def now_us() -> int:
    return time.time_ns() // 1000


def build_app(settings: Settings, rt: Runtime) -> faust.App:
    datadir = settings.home / "maintenance" / "faust"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faustkafka.App(  # faust.App, fixed for transactional (gapped) input topics
        app_id(settings),
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",") if hp.strip()],
        datadir=str(datadir),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # every topic comes from the catalog (broker auto-creation is off)
        topic_disable_leader=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        **faust_group_options(),
        producer_acks=-1,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    schema_of = {READINGS_VALID.physical(settings): "reading_batch",
                 ANOMALIES.physical(settings): "anomaly_event",
                 ALERT_COMMANDS.physical(settings): "alert_command"}
    source_topic = READINGS_VALID.physical(settings)
    inputs = app.topic(*schema_of, **RAW)
    alerts = app.topic(ALERTS.physical(settings), **RAW)
    notifications = app.topic(NOTIFICATIONS.physical(settings), **RAW)
    rejected = app.topic(READINGS_REJECTED.physical(settings), **RAW)
    changelog = app.topic(MAINTENANCE_MACHINES.physical(settings), partitions=settings.partitions,
                          compacting=True, internal=True, **RAW)
    machines = MachineTable(app, name="machines", default=None, partitions=settings.partitions,
                            changelog_topic=changelog, key_type=bytes, value_type=bytes)
    app.tables.add(machines)
    dead = DeadLetters(settings, "maintenance", rt.metrics, rt.codec)
    tracer = rt.tracer or trace.get_tracer("plantstream.maintenance")
    lock = asyncio.Lock()
    ready: list[bool] = []  # logged once: state recovered and partitions owned

    def load(key: bytes) -> MachineState | None:
        raw = machines.get(key)
        return MachineState.loads(rt.codec.decode(raw, "maintenance_state")["state"]) if raw else None

    def store(key: bytes, state: MachineState) -> None:
        tenant, site, machine = state.ids
        active = sum(1 for a in state.book.alerts.values() if a.active)
        value = rt.codec.encode("maintenance_state", {
            "tenant": tenant, "site": site, "machine": machine, "format": "pickle-5",
            "active_alerts": active, "taken_at": now_us(), "state": state.dumps()})
        with machines.pinned(state.partition):
            machines[key] = value
        rt.metrics.open_alerts(key, active)

    async def publish(key: bytes, partition: int, emissions: list[Emission]) -> list[Output]:
        sent = []
        for e in emissions:
            headers = inject_headers([(NOTIFY_HEADER, e.notify.encode())] if e.notify else [])
            value = rt.codec.encode("alert_event", e.record)
            fut = await alerts.send(key=key, value=value, partition=partition, headers=headers)
            await fut  # acknowledged before the state that produced it is written
            sent.append(Output(alerts.get_topic_name(), key, value))
            log.info("alert revision", extra={k: e.record[k] for k in
                                              ("alert_id", "revision", "state", "severity", "rule")}
                     | {"notify": e.notify})
        return sent

    async def reject(msg: Any, reason: str, detail: str, ids: tuple[str, ...] = ()) -> None:
        src = Source(msg.topic, msg.partition, msg.offset, msg.value, list((msg.headers or {}).items())
                     if isinstance(msg.headers, dict) else msg.headers)
        out = dead.make(src, reason, detail, **dict(zip(("tenant", "site", "machine"), ids, strict=False)))
        log.warning("input rejected", extra={"reason": reason, "detail": detail, "topic": msg.topic,
                                             "offset": msg.offset})
        await rejected.send(key=out.key, value=out.value, partition=msg.partition, headers=out.headers)

    async def handle(msg: Any) -> list[Output]:
        """Apply one input message; returns the alert revisions it produced."""
        try:
            record = rt.codec.decode(msg.value or b"", schema_of[msg.topic])
        except DecodeError as exc:
            what = schema_of[msg.topic]
            await reject(msg, exc.reason, f"maintenance cannot read this {what}: {exc.detail}")
            return []
        ids = (record["tenant"], record["site"], record["machine"])
        key = machine_key(*ids)
        state = load(key) or MachineState(*ids, partition=msg.partition)
        if not state.fresh(msg.topic, msg.offset):
            return []  # redelivered: already applied
        now = now_us()
        kind = schema_of[msg.topic]
        if kind == "reading_batch":
            emissions = state.on_readings(record, rt.registry.sensors(ids), rt.rules, now, rt.policy)
        elif kind == "anomaly_event":
            emissions = state.on_anomaly(record, rt.rules, now, rt.policy)
        else:
            try:
                emissions = state.on_command(record, now)
            except InvalidCommand as exc:
                await reject(msg, f"invalid_command:{exc.reason}", exc.detail, ids)
                emissions = []
        sent = await publish(key, state.partition, emissions)
        store(key, state)
        return sent

    @app.agent(inputs, name="machines")
    async def process(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            async with lock:
                t0 = time.perf_counter()
                attrs = kafka_attributes(msg.topic, msg.partition, msg.offset) | key_attributes(msg.key)
                if msg.topic == source_topic:
                    attrs |= batch_attributes(msg.value)
                with message_span(tracer, "maintenance.apply", msg.headers, attrs):
                    sent = await handle(msg)
                rt.metrics.batch(1, sent, time.perf_counter() - t0)

    @app.timer(settings.alert_tick_seconds)
    async def tick() -> None:
        if app.in_recovery or app.rebalancing:
            return
        actives = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == source_topic}
        if actives and not ready:
            ready.append(True)
            log.info("ready", extra={"partitions": sorted(actives), "machines": len(machines)})
        async with lock:
            now = now_us()
            for key in list(machines.keys()):
                state = load(key)
                if state is None or state.partition not in actives:
                    continue
                before = len(state.book.alerts)
                emissions = state.tick(now, rt.policy)
                if emissions or len(state.book.alerts) != before:
                    await publish(key, state.partition, emissions)
                    store(key, state)

    notifier = Notifier(rt.notify, publish=lambda rec: _send_attempt(notifications, rt.codec, rec))

    @app.agent(alerts, name="notify", concurrency=NOTIFY_CONCURRENCY)
    async def notify(stream: Any) -> None:
        async for event in stream.events():
            reason = _header(event.message.headers, NOTIFY_HEADER)
            if reason is None or not rt.notify.routes:
                continue
            msg = event.message
            with message_span(tracer, "maintenance.notify", msg.headers,
                              kafka_attributes(msg.topic, msg.partition, msg.offset)
                              | key_attributes(msg.key)):
                try:
                    alert = rt.codec.decode(msg.value, "alert_event")
                except DecodeError as exc:
                    log.error("unreadable alert on the alerts topic", extra={"error": str(exc)})
                    continue
                await notifier.notify(alert, reason)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[TP], **_: Any) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]"
                                                                    for tp in assigned)})

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: Any) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]"
                                                                   for tp in revoked)})

    return app


async def _send_attempt(topic: Any, codec: AvroCodec, record: dict[str, Any]) -> None:
    value = codec.encode("notification_attempt", record)
    fut = await topic.send(key=record["alert_id"].encode(), value=value, headers=inject_headers())
    await fut
    log.info("notification attempt", extra={k: record[k] for k in ("attempt_id", "outcome", "detail")})


def _header(headers: Any, name: str) -> str | None:
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    for k, v in items:
        if k == name and v is not None:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None
