"""The topic catalog: every topic the platform uses, who writes it and who reads it.

Creating topics ahead of the services (with broker auto-creation off) means a typo cannot
create a topic with the wrong partition count. Each :class:`TopicSpec` also names its
producers and consumers (service names, plus ``gateway`` for machine gateways and ``cli`` for
people's commands: the CLI and the board), so the catalog is the pipeline's graph: the lag
map of ``plantstream status``, archival's routes and the README picture are derived from it.

Consumers read a topic in one of two ways: append-only topics in the service's consumer
group (group id = topic prefix + service name), compacted topics (the asset registry, state
changelogs) whole, by assignment and outside any group, to rebuild state.

A per-tenant topic (a name with ``{tenant}``, e.g. ``gateway.readings.{tenant}``) is one
topic per tenant of the asset registry. The broker's ACLs let a tenant's principals write only
their own tenant's topic, so the topic a record arrived on says which tenant sent it: its
consumers read every tenant's topic by pattern and refuse a record that names another tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plantstream.settings import Settings

GATEWAY = "gateway"  # machine gateways (producers only)
PEOPLE = "cli"  # people's commands from the plantstream CLI (the board writes alert commands as itself)
OUTSIDE = (GATEWAY, PEOPLE)  # principals that are not services of the platform
# Services that follow a topic live from its end, by assignment and outside any consumer group
# (they commit nothing, so they have no lag): the maintenance board's live view of alerts.
FOLLOWERS = ("board",)


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its logical name, the schema of its values, who writes and reads it, and
    how it is kept."""

    name: str
    schema: str
    doc: str
    producers: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    keyed_by: str = "tenant/site/machine"
    compacted: bool = False
    single_partition: bool = False
    retention_hours: int | None = None  # None: the setting's default

    @property
    def per_tenant(self) -> bool:
        return TENANT_FIELD in self.name

    def physical(self, settings: Settings) -> str:
        if self.per_tenant:
            raise ValueError(f"{self.name} is one topic per tenant: use for_tenant(settings, tenant)")
        return settings.topic_prefix + self.name

    def for_tenant(self, settings: Settings, tenant: str) -> str:
        """The physical topic of ``tenant`` (a per-tenant topic's)."""
        if not TENANT_ID.match(tenant):
            raise ValueError(f"tenant id {tenant!r} cannot name a topic: use 1-64 of A-Z a-z 0-9 _ -")
        return settings.topic_prefix + self.name.replace(TENANT_FIELD, tenant)

    def subscription(self, settings: Settings) -> str:
        """What a consumer subscribes to: the topic, or (per tenant) a pattern of all of them."""
        if not self.per_tenant:
            return self.physical(settings)
        head, tail = (settings.topic_prefix + self.name).split(TENANT_FIELD)
        return f"^{_ere_escape(head)}{TENANT_CHARS}{_ere_escape(tail)}$"

    def tenant_of(self, settings: Settings, topic: str) -> str | None:
        """The tenant whose topic ``topic`` is (None: not one of this per-tenant topic's)."""
        if not self.per_tenant:
            return None
        head, tail = (settings.topic_prefix + self.name).split(TENANT_FIELD)
        if not (topic.startswith(head) and topic.endswith(tail)) or len(topic) <= len(head) + len(tail):
            return None
        tenant = topic[len(head):len(topic) - len(tail)]
        return tenant if TENANT_ID.match(tenant) else None

    def matches(self, settings: Settings, topic: str) -> bool:
        """Whether ``topic`` is this spec's topic (or one of its tenants')."""
        if self.per_tenant:
            return self.tenant_of(settings, topic) is not None
        return topic == self.physical(settings)

    def partitions(self, settings: Settings) -> int:
        return 1 if self.single_partition else settings.partitions

    def config(self, settings: Settings) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000"}
        hours = self.retention_hours or settings.retention_hours
        return {"cleanup.policy": "delete", "retention.ms": str(hours * 3_600_000)}

    @property
    def read_in_group(self) -> bool:
        """Consumers read it in their consumer group (committing offsets); compacted topics
        hold state (the latest value per key) that consumers read whole instead."""
        return not self.compacted


TENANT_FIELD = "{tenant}"
TENANT_CHARS = "[A-Za-z0-9_-]+"  # a tenant id, as the asset registry allows it (no dots)
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_STAGES = ("ingest", "validation", "anomaly", "maintenance")


def _ere_escape(text: str) -> str:
    """``text`` as a literal in librdkafka's (POSIX extended) regex syntax; Python's
    ``re.escape`` also escapes ``-``, which POSIX leaves undefined outside brackets."""
    return "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in text)


TENANT_GATEWAY_READINGS = TopicSpec(
    "gateway.readings.{tenant}", "gateway_batch",
    "Raw batches from one tenant's gateways, Avro or JSON (see README); only that tenant's "
    "gateways may write it.",
    producers=(GATEWAY,), consumers=("ingest",))
GATEWAY_READINGS = TopicSpec(
    "gateway.readings", "gateway_batch",
    "The operator's gateway feed (bulk loads, tests): any tenant's batches, written by the "
    "admin principal only.",
    producers=(PEOPLE,), consumers=("ingest",))
READINGS_NORMALIZED = TopicSpec(
    "readings.normalized", "reading_batch", "Readings mapped to sensor ids and canonical units.",
    producers=("ingest",), consumers=("validation",))
READINGS_VALID = TopicSpec(
    "readings.valid", "reading_batch", "Readings that passed validation.",
    producers=("validation",), consumers=("anomaly", "maintenance", "archival"))
READINGS_REJECTED = TopicSpec(
    "readings.rejected", "dead_letter", "Dead letters from every stage, with reason and original bytes.",
    producers=(*_STAGES, "notifier"), consumers=("archival",))
ANOMALIES = TopicSpec("anomalies", "anomaly_event", "Anomaly events from the detector.",
                      producers=("anomaly",), consumers=("maintenance", "archival"))
ALERTS = TopicSpec("alerts", "alert_event", "Alert revisions (raise, update, ack, resolve, escalate).",
                   producers=("maintenance",), consumers=("notifier", "archival", "board"),
                   keyed_by="tenant/site/machine")
TENANT_ALERT_COMMANDS = TopicSpec(
    "alert.commands.{tenant}", "alert_command",
    "One tenant's acknowledge / resolve / silence requests, from the board (for that tenant's "
    "users) and the CLI; maintenance refuses a command naming another tenant.",
    producers=(PEOPLE, "board"), consumers=("maintenance",), keyed_by="tenant/site/machine")
ALERT_COMMANDS = TopicSpec("alert.commands", "alert_command",
                           "The operator's command feed: any tenant's requests, written by the "
                           "admin principal only.",
                           producers=(PEOPLE,), consumers=("maintenance",),
                           keyed_by="tenant/site/machine")
NOTIFICATIONS = TopicSpec("notifications", "notification_attempt",
                          "Every notification delivery attempt.",
                          producers=("notifier",), consumers=("archival",), keyed_by="alert id")
ASSETS = TopicSpec("assets", "asset", "Asset registry: one record per machine (compacted).",
                   producers=(PEOPLE,), consumers=_STAGES, compacted=True, single_partition=True)


def state_changelog(name: str, schema: str, what: str, service: str,
                    keyed_by: str = "tenant/site/machine") -> TopicSpec:
    """The changelog of ``service``'s PartitionStore (plantstream.store): compacted, written in
    the same transaction as the service's output, one partition per input partition (records
    are pinned to the input's partition number), read back by the same service when a
    partition is assigned to it."""
    return TopicSpec(name, schema, f"{what}: state changelog of {service}'s PartitionStore, "
                                   "written in the same transaction as its output.",
                     producers=(service,), consumers=(service,), keyed_by=keyed_by, compacted=True)


ANOMALY_MODELS = state_changelog(
    "anomaly-models-changelog", "model_snapshot", "Anomaly detector state per machine", "anomaly")
INGEST_SEEN_BATCHES = state_changelog(
    "ingest.seen-batches", "ingest_seen_batches", "Batch ids ingest has accepted (tombstones expire old ids)",
    "ingest", keyed_by="tenant/site/machine/batch_id")
VALIDATION_STATE = state_changelog(
    "validation.state", "validation_sensor_state", "Last accepted timestamp per sensor and machine",
    "validation")
MAINTENANCE_MACHINES = state_changelog(
    "maintenance-machines-changelog", "maintenance_state",
    "Maintenance rule windows, open alerts and timers per machine", "maintenance")
# Changelog of the notifier's faust table "open-alerts" (app id "<prefix>notifier"): the
# alerts it follows, their escalation timers and the notifications still to send; as many
# partitions as alerts, as faust requires.
NOTIFIER_OPEN_ALERTS = TopicSpec(
    "notifier-open-alerts-changelog", "notifier_open_alert",
    "Alerts the notifier follows, their escalation timers and pending notifications "
    "(the notifier's faust table changelog).",
    producers=("notifier",), consumers=("notifier",), keyed_by="alert id", compacted=True)

CATALOG: tuple[TopicSpec, ...] = (
    TENANT_GATEWAY_READINGS, GATEWAY_READINGS, READINGS_NORMALIZED, READINGS_VALID, READINGS_REJECTED,
    ANOMALIES, ALERTS, TENANT_ALERT_COMMANDS, ALERT_COMMANDS, NOTIFICATIONS, ASSETS, ANOMALY_MODELS,
    INGEST_SEEN_BATCHES, VALIDATION_STATE, MAINTENANCE_MACHINES, NOTIFIER_OPEN_ALERTS,
)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(name)


def machine_key(tenant: str, site: str, machine: str) -> bytes:
    """The message key that keeps one machine's data in one partition, in order."""
    return f"{tenant}/{site}/{machine}".encode()


def services() -> tuple[str, ...]:
    """Every service the catalog names, in pipeline order (first appearance as a consumer,
    then as a producer); gateways and people are not services."""
    names: dict[str, None] = {}
    for spec in CATALOG:
        names.update(dict.fromkeys(spec.consumers))
    for spec in CATALOG:
        names.update(dict.fromkeys(spec.producers))
    return tuple(n for n in names if n not in OUTSIDE)


def consumed_by(service: str) -> tuple[TopicSpec, ...]:
    """The topics ``service`` reads, in catalog order."""
    return tuple(spec for spec in CATALOG if service in spec.consumers)


def produced_by(service: str) -> tuple[TopicSpec, ...]:
    """The topics ``service`` writes, in catalog order."""
    return tuple(spec for spec in CATALOG if service in spec.producers)


def group_inputs(service: str) -> tuple[TopicSpec, ...]:
    """The topics ``service`` reads in its consumer group: its input, whose lag counts."""
    if service in FOLLOWERS:
        return ()
    return tuple(spec for spec in consumed_by(service) if spec.read_in_group)


def _who(names: tuple[str, ...]) -> str:
    return ", ".join({GATEWAY: "gateways", PEOPLE: "people (CLI)"}.get(n, n) for n in names)


def pipeline_picture() -> str:
    """The README's picture of the pipeline, generated from the catalog (`python -m
    plantstream.topics` prints it): one row per topic, who writes it and who reads it."""
    rows = ["| topic | value schema | key | written by | read by | kept |", "|---|---|---|---|---|---|"]
    for spec in CATALOG:
        kept = "compacted" if spec.compacted else (
            f"{spec.retention_hours} h" if spec.retention_hours else "`PLANTSTREAM_RETENTION_HOURS`")
        rows.append(f"| `{spec.name}` | `{spec.schema}` | {spec.keyed_by} | {_who(spec.producers)} "
                    f"| {_who(spec.consumers)} | {kept} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(pipeline_picture())
