"""Kafka on confluent-kafka with reliable defaults.

Producers are idempotent with ``acks=all``. Consumers never auto-commit: an offset is
committed only after the work for it is done (for processors, inside the same Kafka
transaction as their output, so a crash at any moment neither loses nor repeats output).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from plantstream.errors import BrokerUnavailable
from plantstream.settings import Settings
from plantstream.topics import CATALOG, TopicSpec

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class Output:
    """A record to produce: physical topic, key, value and headers. ``partition`` pins the
    record to one partition (changelogs that must sit beside their input partition); None lets
    the key choose."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


def security_config(settings: Settings) -> dict[str, Any]:
    """How this process authenticates to Kafka (librdkafka names): its SASL principal, over TLS
    when the protocol says SSL. Every client here is built with it."""
    protocol = settings.kafka_security_protocol
    conf: dict[str, Any] = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        conf.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                     "sasl.username": settings.kafka_username, "sasl.password": settings.kafka_password})
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_file:
        conf["ssl.ca.location"] = settings.kafka_ssl_ca_file
    return conf


def faust_credentials(settings: Settings) -> Any:
    """:func:`security_config` for faust (aiokafka): its SASL login, TLS verified against
    ``PLANTSTREAM_KAFKA_SSL_CA_FILE`` (or the system's CAs)."""
    import ssl

    import faust

    protocol = settings.kafka_security_protocol
    context = (ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)
               if protocol.endswith("SSL") else None)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_username, password=settings.kafka_password,
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        **security_config(settings),
        "client.id": f"plantstream-{settings.instance}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "batch.size": 1_000_000,
        "queue.buffering.max.kbytes": 262_144,
    }
    conf.update(overrides)
    return conf


# A copy that dies (SIGKILL, lost host) keeps its partitions until its group session
# (PLANTSTREAM_GROUP_SESSION_SECONDS) expires: that bounds how long a crash stalls its
# partitions. Shared by the confluent-kafka services and the faust apps (see
# :func:`faust_group_options`).
GROUP_HEARTBEAT_S = 1.0


def faust_group_options(settings: Settings) -> dict[str, float]:
    """Consumer-group timing for faust apps, the same as :func:`consumer_config`'s (faust's
    own default session of 60 s left a killed copy's partitions unread for a minute)."""
    return {"broker_session_timeout": settings.group_session_seconds,
            "broker_heartbeat_interval": GROUP_HEARTBEAT_S}


# No static membership (group.instance.id), although it cut a SIGKILLed copy's return from
# 9-10 s to 1.5-3 s in bench_recovery: after a broker restart librdkafka's static members
# fence themselves (confluentinc/librdkafka#3437, open: its session times out, it rejoins under
# the same instance id and the broker reports FENCED_INSTANCE_ID as a fatal error), and every
# service stopped reading in the broker-restart fault test. A restart costs the session timeout.
def consumer_config(settings: Settings, group: str, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        **security_config(settings),
        "client.id": f"plantstream-{settings.instance}",
        "group.id": settings.topic_prefix + group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": int(settings.group_session_seconds * 1000),
        "heartbeat.interval.ms": int(GROUP_HEARTBEAT_S * 1000),
        "max.poll.interval.ms": 120_000,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
    }
    conf.update(overrides)
    return conf


def admin_client(settings: Settings, **overrides: Any) -> AdminClient:
    # log_level 4: keep librdkafka's informational lines (e.g. BGQUEUE purges at close) off the terminal
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **security_config(settings),
                        "log_level": 4, **overrides})


def check_broker(settings: Settings, timeout: float = 5.0) -> int:
    """Return the number of brokers that answer, or raise BrokerUnavailable saying what to do."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=min(timeout, 2)).close()
    except OSError as exc:
        raise BrokerUnavailable(
            f"no Kafka broker at {settings.kafka_bootstrap} ({exc.strerror or exc}); "
            "start it with `make up` or set PLANTSTREAM_KAFKA_BOOTSTRAP"
        ) from None
    sasl = settings.kafka_security_protocol.startswith("SASL")
    if sasl and not settings.kafka_password:
        raise BrokerUnavailable(
            f"no Kafka password for principal {settings.kafka_username!r}: "
            "set PLANTSTREAM_KAFKA_PASSWORD_FILE "
            "(the local broker writes its admin's to $PLANTSTREAM_HOME/kafka/secrets/admin.password at "
            "`make up`) or PLANTSTREAM_KAFKA_PASSWORD")
    errors: list[KafkaError] = []
    admin = admin_client(settings, log_level=0, error_cb=errors.append)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0.5)  # serves error_cb: why the broker did not answer
        failed = next((e for e in errors if e.code() == KafkaError._AUTHENTICATION), None)
        if failed is not None:
            raise BrokerUnavailable(
                f"Kafka at {settings.kafka_bootstrap} refused principal {settings.kafka_username!r} "
                f"({failed.str()}); check PLANTSTREAM_KAFKA_USERNAME and its password") from None
        raise BrokerUnavailable(f"Kafka at {settings.kafka_bootstrap} does not answer: {exc}") from None
    return len(meta.brokers)


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return spec.physical(settings)


def physical_topics(settings: Settings, specs: Iterable[TopicSpec],
                    tenants: Iterable[str] = ()) -> list[tuple[str, TopicSpec]]:
    """(topic, spec) of every topic of ``specs``: per-tenant ones for each of ``tenants``."""
    tenants = sorted(set(tenants))
    return [(name, spec) for spec in specs
            for name in ([spec.for_tenant(settings, t) for t in tenants] if spec.per_tenant
                         else [spec.physical(settings)])]


def create_topics(settings: Settings, specs: Iterable[TopicSpec] = CATALOG,
                  tenants: Iterable[str] = ()) -> dict[str, str]:
    """Create missing catalog topics (a per-tenant topic for each of ``tenants``); return
    {topic: 'created' | 'exists'}.

    An existing topic with a different partition count is reported, not changed: adding
    partitions would move machines between partitions and break per-machine order.
    """
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=10).topics
    result: dict[str, str] = {}
    new = []
    for name, spec in physical_topics(settings, specs, tenants):
        if name in existing:
            have = len(existing[name].partitions)
            want = spec.partitions(settings)
            result[name] = "exists" if have == want else f"exists with {have} partitions (want {want})"
            continue
        new.append(NewTopic(name, num_partitions=spec.partitions(settings),
                            replication_factor=settings.replication, config=spec.config(settings)))
    if new:
        for name, future in admin.create_topics(new, operation_timeout=30).items():
            try:
                future.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    result[name] = "exists"
                else:
                    raise
    return result


def delete_topics(settings: Settings, names: list[str]) -> None:
    if not names:
        return
    for future in admin_client(settings).delete_topics(names, operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def describe_topics(settings: Settings) -> list[dict[str, Any]]:
    meta = admin_client(settings).list_topics(timeout=10)
    rows = []
    tenants = {t for spec in CATALOG for name in meta.topics if (t := spec.tenant_of(settings, name))}
    for name, spec in physical_topics(settings, CATALOG, tenants):
        t = meta.topics.get(name)
        rows.append({
            "topic": name,
            "partitions": len(t.partitions) if t and not t.error else 0,
            "schema": spec.schema,
            "key": spec.keyed_by,
            "policy": "compact" if spec.compacted
            else f"delete {spec.retention_hours or settings.retention_hours}h",
            "exists": bool(t and not t.error),
        })
    return rows


class DeliveryTracker:
    """Collects delivery reports so a caller can assert every record was acknowledged."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.delivered = 0

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")
        else:
            self.delivered += 1


class ReliableProducer:
    """An idempotent producer whose ``flush`` raises if anything was not acknowledged."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._producer = Producer(producer_config(settings, **overrides))
        self.tracker = DeliveryTracker()

    def produce(self, out: Output) -> None:
        while True:
            try:
                self._producer.produce(out.topic, out.value, out.key, headers=out.headers,
                                       partition=-1 if out.partition is None else out.partition,
                                       on_delivery=self.tracker)
                return
            except BufferError:
                self._producer.poll(0.05)

    def topic_error(self, topic: str, timeout: float = 10.0) -> KafkaError | None:
        """Why ``topic`` cannot be written as this login (None: it exists and may be seen)."""
        t = self._producer.list_topics(topic, timeout=timeout).topics.get(topic)
        if t is None:
            return KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        return t.error

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (so ``tracker`` stays current during long runs)."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        left = self._producer.flush(timeout)
        if left:
            raise BrokerUnavailable(f"{left} records not acknowledged by Kafka after {timeout:.0f}s")
        if self.tracker.errors:
            errors, self.tracker.errors = self.tracker.errors, []
            raise BrokerUnavailable(f"{len(errors)} records failed: {errors[0]}")
        return self.tracker.delivered


def next_offsets(msgs: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``msgs``: one past the highest offset per partition."""
    top: dict[tuple[str, int], int] = {}
    for m in msgs:
        k = (m.topic(), m.partition())
        if m.offset() >= top.get(k, -1):
            top[k] = m.offset()
    return [TopicPartition(t, p, o + 1) for (t, p), o in top.items()]


_made: dict[str, int] = {}
_made_lock = threading.Lock()


def transactional_id(settings: Settings, service: str) -> str:
    """Stable per service copy: ``<prefix><service>-<instance>`` for the first producer a
    process makes (the supervisor names each copy's instance ``<service>-<copy>``; k8s, the
    pod). So a restarted copy fences its predecessor: its ``init_transactions`` aborts the
    killed copy's open transaction at once, where the broker would wait for
    ``transaction.timeout.ms``, and meanwhile that transaction held back the last stable
    offset downstream and the next owner's stable offsets. Correctness does not rest on it:
    KIP-447 fencing comes from the group generation sent with the offsets.

    A producer made later in the same process (replacing a failed or wedged one) gets a new
    suffix (``.1``, ``.2``): the one it replaces may still be alive inside librdkafka (a call
    wedged in a helper thread, an epoch bump being retried), and with the same id the two
    fence each other. That is what made every producer fail with INVALID_TXN_STATE after a
    broker restart when replacements reused the copy's id."""
    base = f"{settings.topic_prefix}{service}-{settings.instance}"
    with _made_lock:
        n = _made.get(base, 0)
        _made[base] = n + 1
    return base if n == 0 else f"{base}.{n}"


# answers of a broker whose partition has no leader yet (just created, or the broker just
# restarted): ask again
NO_LEADER_YET = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                           KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT})


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 30.0) -> tuple[int, int]:
    """``consumer.get_watermark_offsets`` (low, high), asked again while the partition has no
    leader yet; raises the broker's error after ``timeout`` seconds or when it is not that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=min(10.0, timeout), cached=False)
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in NO_LEADER_YET) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_assignment(consumer: Consumer, timeout: float = 30.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.1)
        if consumer.assignment():
            return consumer.assignment()
    return []
