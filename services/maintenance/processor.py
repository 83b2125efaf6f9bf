"""The maintenance Processor: readings.valid, anomalies and alert.commands in (partition p of
all three goes to the same copy, so one machine's inputs are applied in order), alert
revisions and dead letters out, each machine's rules and alert book in the service's
PartitionStore: all committed in one Kafka transaction by the loop.

- Exactly once: an input is applied once, and the revisions it caused are written once, in
  the transaction that commits its offset and the machine's new state.
- Deterministic given the input order: the clock of an input is its Kafka timestamp, not the
  moment it happens to be processed, so a copy that replays after a crash emits the same
  revisions a never-crashed copy would have.
- Timers (no data, auto-resolve, throttled updates) run in ``tick`` every
  PLANTSTREAM_ALERT_TICK_SECONDS over the machines of the partitions this copy owns.
- Revisions people should hear about carry the ``plantstream-notify`` header; the notifier
  service decides who hears them and when.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message, TopicPartition
from opentelemetry.trace import Tracer

from maintenance.lifecycle import Emission, Policy
from maintenance.machine import MachineState, RuleSet, SensorReadings, state_codec
from plantstream.alertstate import InvalidCommand
from plantstream.assets import AssetRegistry
from plantstream.avro import AvroCodec
from plantstream.deadletter import DeadLetters, Source
from plantstream.errors import DecodeError
from plantstream.kafka import Output
from plantstream.metrics import ServiceMetrics
from plantstream.readingbatch import decode_readings
from plantstream.runner import Processor
from plantstream.settings import Settings
from plantstream.statecodec import FORMAT, StateCodecError
from plantstream.store import PartitionStore
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
    READINGS_VALID,
    TENANT_ALERT_COMMANDS,
    TopicSpec,
    machine_key,
)

log = logging.getLogger(__name__)

NOTIFY_HEADER = "plantstream-notify"
SOURCES: list[TopicSpec] = [READINGS_VALID, ANOMALIES, TENANT_ALERT_COMMANDS, ALERT_COMMANDS]


def now_us() -> int:
    return time.time_ns() // 1000


class MaintenanceProcessor(Processor):
    name = "maintenance"

    def __init__(self, settings: Settings, registry: AssetRegistry, tracer: Tracer,
                 metrics: ServiceMetrics | None = None, *, rules: RuleSet | None = None,
                 policy: Policy | None = None) -> None:
        self.metrics = metrics or ServiceMetrics(self.name)
        self.registry = registry
        self.tracer = tracer
        self.rules = rules or RuleSet()
        self.policy = policy or Policy()
        self.codec = AvroCodec()
        self.tick_seconds = settings.alert_tick_seconds
        self.settings = settings
        self.schema_of: dict[str, str] = {}  # input topic -> its value schema (see _schema)
        self.readings_topic = READINGS_VALID.physical(settings)
        self.alerts_topic = ALERTS.physical(settings)
        self.dead = DeadLetters(settings, self.name, self.metrics, self.codec)
        self.machines: PartitionStore[MachineState] = PartitionStore(
            settings, MAINTENANCE_MACHINES, self._encode, self._decode, name="maintenance.machines")
        self.stores = (self.machines,)
        self._listening_since: dict[int, int] = {}  # input partition -> wall clock it was assigned at
        self._sensor_names: dict[bytes, str] = {}

    # inputs ------------------------------------------------------------------------------------
    def process(self, messages: Sequence[Message]) -> list[Output]:
        outs: list[Output] = []
        for msg in messages:
            attrs = kafka_attributes(msg.topic(), msg.partition(), msg.offset()) | key_attributes(msg.key())
            if msg.topic() == self.readings_topic:
                attrs |= batch_attributes(msg.value())
            with message_span(self.tracer, "maintenance.apply", msg.headers(), attrs):
                self._apply(msg, outs)
        return outs

    def _schema(self, topic: str) -> str:
        if topic not in self.schema_of:
            self.schema_of[topic] = next(s.schema for s in SOURCES if s.matches(self.settings, topic))
        return self.schema_of[topic]

    def _apply(self, msg: Message, outs: list[Output]) -> None:
        topic = msg.topic()
        kind = self._schema(topic)
        src = Source.of(msg)
        sender = TENANT_ALERT_COMMANDS.tenant_of(self.settings, topic)  # None: not a tenant's commands
        try:
            if kind == "reading_batch":
                readings = self._readings(msg.value() or b"")
                record = {"tenant": readings.tenant, "site": readings.site, "machine": readings.machine}
            else:
                record = self.codec.decode(msg.value() or b"", kind)
        except DecodeError as exc:
            outs.append(self.dead.make(src, exc.reason, f"maintenance cannot read this {kind}: {exc.detail}",
                                       tenant=sender))
            return
        if sender is not None and record["tenant"] != sender:
            # never touches the named tenant's state; filed under the tenant that sent it
            log.warning("alert command refused", extra={"reason": "tenant_mismatch", "topic": topic})
            outs.append(self.dead.make(
                src, "invalid_command:tenant_mismatch",
                f"a command for {record['tenant']!r}'s alert {record['alert_id']!r} came from tenant "
                f"{sender!r} (topic {topic}); a tenant may only act on its own alerts", tenant=sender))
            return
        ids = (record["tenant"], record["site"], record["machine"])
        key = machine_key(*ids)
        partition = msg.partition()
        state = self.machines.get(partition, key) or MachineState(*ids, partition=partition)
        now = _input_clock(msg)
        try:
            if kind == "reading_batch":
                specs = self.registry.sensors(ids)
                emissions = state.on_readings(readings, specs, self.rules, now, self.policy)
            elif kind == "anomaly_event":
                emissions = state.on_anomaly(record, self.rules, now, self.policy)
            else:
                emissions = state.on_command(record, now)
        except InvalidCommand as exc:
            log.warning("alert command refused", extra={"reason": exc.reason, "detail": exc.detail})
            outs.append(self.dead.make(src, f"invalid_command:{exc.reason}", exc.detail,
                                       **dict(zip(("tenant", "site", "machine"), ids, strict=True))))
            return
        self.machines.put(partition, key, state)
        outs.extend(self._publish(key, emissions))

    def _readings(self, value: bytes) -> SensorReadings:
        """A reading batch's columns, by the platform's reading_batch decoder (fastavro's dict
        per reading was a fifth of maintenance's time); sensor ids strictly UTF-8, as fastavro
        read them."""
        batch = decode_readings(value, self.codec)
        names = self._sensor_names
        try:
            sensors = [names.get(raw) or raw.decode() for raw in batch.sensors]
        except UnicodeDecodeError as exc:
            raise DecodeError("malformed_avro", f"a sensor id is not UTF-8: {exc}") from None
        if len(names) < 100_000:
            names.update(zip(batch.sensors, sensors, strict=True))
        return SensorReadings(batch.tenant, batch.site, batch.machine, batch.gateway, batch.ingest_time,
                              batch.sent_at, sensors, batch.ts.tolist(), batch.values.tolist())

    def assigned(self, partitions: list[TopicPartition]) -> None:
        now = now_us()
        for p in {p.partition for p in partitions} - set(self._listening_since):
            self._listening_since[p] = now  # silences before this were not heard by this copy
        log.info("ready", extra={"partitions": sorted({p.partition for p in partitions}),
                                 "machines": len(self.machines)})

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._listening_since.pop(p.partition, None)

    # timers ------------------------------------------------------------------------------------
    def tick(self, now: int) -> list[Output]:
        outs: list[Output] = []
        store = self.machines
        for partition in store.partitions():
            for key in store.keys(partition):
                state = store.get(partition, key)
                if state is None:
                    continue
                before = len(state.book.alerts)
                emissions = state.tick(now, self.policy, self._listening_since.get(partition, 0))
                if emissions or len(state.book.alerts) != before:
                    store.put(partition, key, state)
                    outs.extend(self._publish(key, emissions))
        return outs

    def _publish(self, key: bytes, emissions: list[Emission]) -> list[Output]:
        outs = []
        for e in emissions:
            headers = inject_headers([(NOTIFY_HEADER, e.notify.encode())] if e.notify else [])
            outs.append(Output(self.alerts_topic, key, self.codec.encode("alert_event", e.record), headers))
            log.info("alert revision", extra={k: e.record[k] for k in
                                              ("alert_id", "revision", "state", "severity", "rule")}
                     | {"notify": e.notify})
        return outs

    # state snapshots ---------------------------------------------------------------------------
    def _encode(self, _key: bytes, state: MachineState) -> bytes:
        tenant, site, machine = state.ids
        active = sum(1 for a in state.book.alerts.values() if a.active)
        self.metrics.open_alerts(machine_key(*state.ids), active)
        return self.codec.encode("maintenance_state", {
            "tenant": tenant, "site": site, "machine": machine, "format": FORMAT,
            "active_alerts": active, "taken_at": now_us(), "state": state_codec().encode(state)})

    def _decode(self, key: bytes, raw: bytes) -> MachineState | None:
        try:
            rec = self.codec.decode(raw, "maintenance_state")
            if rec["format"] != FORMAT:
                raise StateCodecError(f"state format {rec['format']!r}, expected {FORMAT}")
            state = state_codec().decode(rec["state"])
        except (DecodeError, StateCodecError) as exc:
            log.error("unreadable machine state ignored; the machine starts with no open alerts",
                      extra={"key": key.decode("utf-8", "replace"), "error": str(exc)})
            return None
        return state if isinstance(state, MachineState) else None


def _input_clock(msg: Message) -> int:
    """The input's Kafka timestamp in µs (the wall clock when it has none)."""
    kind, ms = msg.timestamp()
    return ms * 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ms > 0 else now_us()

