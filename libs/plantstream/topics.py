"""The topic catalog: every topic the platform uses, created up front.

Creating topics ahead of the services (with broker auto-creation off) means a typo cannot
create a topic with the wrong partition count, and faust's changelogs always match their
source topics.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantstream.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its logical name, the schema of its values, and how it is kept."""

    name: str
    schema: str
    doc: str
    keyed_by: str = "tenant/site/machine"
    compacted: bool = False
    single_partition: bool = False
    retention_hours: int | None = None  # None: the setting's default

    def physical(self, settings: Settings) -> str:
        return settings.topic_prefix + self.name

    def partitions(self, settings: Settings) -> int:
        return 1 if self.single_partition else settings.partitions

    def config(self, settings: Settings) -> dict[str, str]:
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000"}
        hours = self.retention_hours or settings.retention_hours
        return {"cleanup.policy": "delete", "retention.ms": str(hours * 3_600_000)}


GATEWAY_READINGS = TopicSpec(
    "gateway.readings", "gateway_batch", "Raw batches from gateways, Avro or JSON (see README).")
READINGS_NORMALIZED = TopicSpec(
    "readings.normalized", "reading_batch", "Readings mapped to sensor ids and canonical units.")
READINGS_VALID = TopicSpec(
    "readings.valid", "reading_batch", "Readings that passed validation.")
READINGS_REJECTED = TopicSpec(
    "readings.rejected", "dead_letter", "Dead letters from every stage, with reason and original bytes.")
ANOMALIES = TopicSpec("anomalies", "anomaly_event", "Anomaly events from the detector.")
ALERTS = TopicSpec("alerts", "alert_event", "Alert revisions (raise, update, ack, resolve, escalate).",
                   keyed_by="tenant/site/machine")
ALERT_COMMANDS = TopicSpec("alert.commands", "alert_command",
                           "Acknowledge / resolve / silence requests.", keyed_by="tenant/site/machine")
NOTIFICATIONS = TopicSpec("notifications", "notification_attempt",
                          "Every notification delivery attempt.", keyed_by="alert id")
ASSETS = TopicSpec("assets", "asset", "Asset registry: one record per machine (compacted).",
                   compacted=True, single_partition=True)
# Changelog of the anomaly service's faust table "models" (faust names it
# "<app id>-<table>-changelog"; the app id is "<prefix>anomaly"). Same partition count as
# readings.valid, as faust requires.
ANOMALY_MODELS = TopicSpec("anomaly-models-changelog", "model_snapshot",
                           "Anomaly detector state per machine (faust table changelog).", compacted=True)
# Service state changelogs, written in the same transaction as the service's output, one
# partition per input partition (records are pinned to the input's partition number).
INGEST_SEEN_BATCHES = TopicSpec(
    "ingest.seen-batches", "ingest_seen_batches",
    "Batch ids ingest has accepted, per input partition: rebuilds duplicate detection.",
    keyed_by="input partition", retention_hours=24)
VALIDATION_STATE = TopicSpec(
    "validation.state", "validation_sensor_state",
    "Last accepted timestamp per sensor and machine (compacted): rebuilds order checks.",
    compacted=True)
# Changelog of the maintenance service's faust table "machines" (app id "<prefix>maintenance"):
# rule windows, open alerts and timers per machine; as many partitions as readings.valid.
MAINTENANCE_MACHINES = TopicSpec("maintenance-machines-changelog", "maintenance_state",
                                 "Maintenance rule and alert state per machine (faust table changelog).",
                                 compacted=True)

CATALOG: tuple[TopicSpec, ...] = (
    GATEWAY_READINGS, READINGS_NORMALIZED, READINGS_VALID, READINGS_REJECTED,
    ANOMALIES, ALERTS, ALERT_COMMANDS, NOTIFICATIONS, ASSETS, ANOMALY_MODELS,
    INGEST_SEEN_BATCHES, VALIDATION_STATE, MAINTENANCE_MACHINES,
)


def by_name(name: str) -> TopicSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(name)


def machine_key(tenant: str, site: str, machine: str) -> bytes:
    """The message key that keeps one machine's data in one partition, in order."""
    return f"{tenant}/{site}/{machine}".encode()
