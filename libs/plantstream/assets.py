"""The asset registry: which machines exist, their sensors, gateway tags, units, valid ranges
and limits. Operators write it as YAML; ``plantstream assets apply`` publishes one record per
machine to the compacted ``assets`` topic; every service follows that topic live.

YAML layout (see ``deploy/local/assets.yaml`` for a full example)::

    tenants:
      - id: acme
        sites:
          - id: plant1
            machines:
              - id: pump-01
                type: pump
                sensors:
                  - id: bearing_temp
                    tag: P01.TT1
                    unit: degC           # canonical unit stored by the platform
                    gateway_unit: degF   # what the gateway sends, if different
                    valid: [-40, 200]    # physically plausible range (canonical unit)
                    warning_high: 80
                    critical_high: 95
                    action: Check bearing lubrication.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from plantstream.avro import AvroCodec
from plantstream.errors import ConfigError, DecodeError, PlantstreamError
from plantstream.kafka import Output, ReliableProducer, consumer_config, create_topics, watermarks
from plantstream.settings import Settings
from plantstream.topics import ASSETS, CATALOG, TENANT_ID, machine_key

log = logging.getLogger(__name__)

MachineId = tuple[str, str, str]
T = TypeVar("T")

_SENSOR_KEYS = {"id", "tag", "unit", "gateway_unit", "valid", "warning_high", "critical_high",
                "warning_low", "critical_low", "action"}


def _require(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d or d[key] in (None, ""):
        raise ConfigError(f"{where}: '{key}' is required")
    return d[key]


def _num(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {value!r} is not a number")
    return float(value)


def parse_assets(doc: dict[str, Any], now_us: int | None = None) -> list[dict[str, Any]]:
    """Turn the YAML document into Asset records (schema ``asset``), checking it as we go."""
    now_us = now_us if now_us is not None else int(time.time() * 1e6)
    if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), list):
        raise ConfigError("asset file: expected a top-level 'tenants:' list")
    records = []
    seen: set[MachineId] = set()
    for t in doc["tenants"]:
        tenant = str(_require(t, "id", "tenant"))
        if not TENANT_ID.match(tenant):  # it names the tenant's topics (gateway.readings.<tenant>)
            raise ConfigError(f"tenant id {tenant!r}: use 1-64 of A-Z a-z 0-9 _ - (starting with a "
                              "letter or digit)")
        for s in t.get("sites") or []:
            site = str(_require(s, "id", f"tenant {tenant} site"))
            for m in s.get("machines") or []:
                machine = str(_require(m, "id", f"{tenant}/{site} machine"))
                where = f"{tenant}/{site}/{machine}"
                if (tenant, site, machine) in seen:
                    raise ConfigError(f"{where}: machine listed twice")
                seen.add((tenant, site, machine))
                sensors, ids, tags = [], set(), set()
                for sd in m.get("sensors") or []:
                    sid = str(_require(sd, "id", f"{where} sensor"))
                    sw = f"{where}/{sid}"
                    unknown = set(sd) - _SENSOR_KEYS
                    if unknown:
                        allowed = sorted(_SENSOR_KEYS)
                        raise ConfigError(f"{sw}: unknown keys {sorted(unknown)} (allowed: {allowed})")
                    tag = str(sd.get("tag") or sid)
                    if sid in ids or tag in tags:
                        raise ConfigError(f"{sw}: sensor id or tag used twice in the machine")
                    ids.add(sid)
                    tags.add(tag)
                    valid = sd.get("valid") or [None, None]
                    if not isinstance(valid, list) or len(valid) != 2:
                        raise ConfigError(f"{sw}: 'valid' must be [min, max]")
                    lo, hi = _num(valid[0], sw), _num(valid[1], sw)
                    if lo is not None and hi is not None and lo >= hi:
                        raise ConfigError(f"{sw}: valid range [{lo}, {hi}] is empty")
                    sensors.append({
                        "sensor": sid, "tag": tag, "unit": str(_require(sd, "unit", sw)),
                        "gateway_unit": sd.get("gateway_unit"),
                        "min_valid": lo, "max_valid": hi,
                        "warning_high": _num(sd.get("warning_high"), sw),
                        "critical_high": _num(sd.get("critical_high"), sw),
                        "warning_low": _num(sd.get("warning_low"), sw),
                        "critical_low": _num(sd.get("critical_low"), sw),
                        "recommended_action": sd.get("action"),
                    })
                if not sensors:
                    raise ConfigError(f"{where}: a machine needs at least one sensor")
                records.append({
                    "tenant": tenant, "site": site, "machine": machine,
                    "machine_type": str(m.get("type") or "generic"),
                    "description": m.get("description"), "sensors": sensors, "updated_at": now_us,
                })
    return records


def load_assets_file(path: Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read asset file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"asset file {path} is not valid YAML: {exc}") from None
    return parse_assets(doc)


def publish_assets(settings: Settings, records: Iterable[dict[str, Any]],
                   remove: Iterable[MachineId] = ()) -> int:
    """Publish asset records (and tombstones for ``remove``); return how many were acknowledged.
    Creates the per-tenant topics (a tenant's gateway topic) of the records' tenants first."""
    records = list(records)
    create_topics(settings, [spec for spec in CATALOG if spec.per_tenant],
                  tenants={r["tenant"] for r in records})
    codec = AvroCodec()
    topic = ASSETS.physical(settings)
    producer = ReliableProducer(settings)
    for r in records:
        producer.produce(Output(topic, machine_key(r["tenant"], r["site"], r["machine"]),
                                codec.encode("asset", r)))
    for t, s, m in remove:
        producer.produce(Output(topic, machine_key(t, s, m), None))
    return producer.flush()


def current_machines(settings: Settings) -> list[dict[str, Any]]:
    """Every machine on the compacted assets topic now."""
    follower = AssetFollower(settings).start()
    try:
        return follower.registry.machines()
    finally:
        follower.stop()


def registry_tenants(settings: Settings) -> set[str]:
    """The tenants with at least one machine on the assets topic now."""
    return {m["tenant"] for m in current_machines(settings)}


class AssetRegistry:
    """In-memory view of the assets topic, indexed for the lookups services make."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self._machines: dict[MachineId, dict[str, Any]] = {}
        self._by_tag: dict[MachineId, dict[str, dict[str, Any]]] = {}
        self._by_sensor: dict[MachineId, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.version = 0
        for r in records:
            self.put(r)

    def put(self, record: dict[str, Any]) -> None:
        mid = (record["tenant"], record["site"], record["machine"])
        with self._lock:
            self._machines[mid] = record
            self._by_tag[mid] = {s["tag"]: s for s in record["sensors"]}
            self._by_sensor[mid] = {s["sensor"]: s for s in record["sensors"]}
            self.version += 1

    def remove(self, mid: MachineId) -> None:
        with self._lock:
            self._machines.pop(mid, None)
            self._by_tag.pop(mid, None)
            self._by_sensor.pop(mid, None)
            self.version += 1

    def machine(self, tenant: str, site: str, machine: str) -> dict[str, Any] | None:
        return self._machines.get((tenant, site, machine))

    def sensor_by_tag(self, mid: MachineId, tag: str) -> dict[str, Any] | None:
        return self._by_tag.get(mid, {}).get(tag)

    def sensor(self, mid: MachineId, sensor: str) -> dict[str, Any] | None:
        return self._by_sensor.get(mid, {}).get(sensor)

    def sensors(self, mid: MachineId) -> dict[str, dict[str, Any]]:
        return self._by_sensor.get(mid, {})

    def machines(self) -> list[dict[str, Any]]:
        return list(self._machines.values())

    def __len__(self) -> int:
        return len(self._machines)


class AssetFollower:
    """Keeps an :class:`AssetRegistry` up to date from the compacted assets topic in a
    background thread. Reads the whole topic (no consumer group: every copy of every service
    needs every machine)."""

    def __init__(self, settings: Settings, registry: AssetRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or AssetRegistry()
        self.codec = AvroCodec()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asset-follower", daemon=True)
        self.error: str | None = None

    def start(self, wait: float = 30.0) -> AssetFollower:
        """Start following; return once the registry holds everything published so far."""
        self._thread.start()
        if not self._ready.wait(wait):
            raise PlantstreamError(
                f"asset registry not loaded after {wait:.0f}s from {ASSETS.physical(self.settings)}: "
                f"is the broker up? ({self.error or 'no answer'})")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            parts = key.decode().split("/", 2)
            if len(parts) == 3:
                self.registry.remove((parts[0], parts[1], parts[2]))
            return
        try:
            self.registry.put(self.codec.decode(value, "asset"))
        except DecodeError as exc:
            log.error("bad asset record skipped",
                      extra={"key": key.decode(errors="replace"), "error": str(exc)})

    def _run(self) -> None:
        topic = ASSETS.physical(self.settings)
        consumer = Consumer(consumer_config(
            self.settings, f"assets-{uuid.uuid4().hex}", **{"enable.partition.eof": True}))
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            deadline = time.monotonic() + 10.0  # a topic created a moment ago reaches the broker's metadata
            while meta is not None and meta.error is not None and time.monotonic() < deadline \
                    and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and not self._stop.is_set():
                time.sleep(0.2)
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                why = meta.error.str() if meta is not None and meta.error is not None else "missing"
                self.error = f"topic {topic}: {why}; run `plantstream topics create`"
                return
            parts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
            ends = {p.partition: watermarks(consumer, p, timeout=25.0)[1] for p in parts}
            consumer.assign(parts)
            pending = {p for p, end in ends.items() if end > 0}
            if not pending:
                self._ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == err._PARTITION_EOF:
                            pending.discard(msg.partition())
                        continue
                    self._apply(msg.key(), msg.value())
                    if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                        pending.discard(msg.partition())
                if not pending:
                    self._ready.set()
        except Exception as exc:  # reported through start()/error, never kills the service silently
            self.error = repr(exc)
            log.exception("asset follower failed")
        finally:
            consumer.close()


class RegistryView(Generic[T]):
    """Per-machine lookup tables derived from the registry (e.g. tag -> sensor spec), built
    once per machine and rebuilt after any registry change: services look them up per message,
    so deriving them each time would be wasted work on the hot path."""

    def __init__(self, registry: AssetRegistry, build: Callable[[dict[str, Any]], T]) -> None:
        self.registry = registry
        self.build = build
        self._tables: dict[MachineId, T | None] = {}
        self._version = -1

    def get(self, mid: MachineId) -> T | None:
        """The table of machine ``mid``, or None if the registry does not know the machine."""
        if self.registry.version != self._version:
            self._tables.clear()
            self._version = self.registry.version
        try:
            return self._tables[mid]
        except KeyError:
            asset = self.registry.machine(*mid)
            table = None if asset is None else self.build(asset)
            self._tables[mid] = table
            return table
