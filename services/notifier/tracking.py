"""The notifier's view of one alert: the latest revision plus its notification timers, and
how each new revision changes it. Kafka-free; times are wall-clock microseconds passed in.

Why the notification still to send (``pending_*``) is part of the tracked state: the table
of tracked alerts is the notifier's outbox. A revision that should be heard about is
recorded as pending in the table first and delivered later (after the grouping window, or
when quiet hours end), and cleared only once delivered; a crash in between re-sends it with
the same key (so the same attempt ids and Idempotency-Key) instead of forgetting it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from plantstream.avro import AvroCodec

SCHEMA = "notifier_open_alert"
NEW_CYCLE = ("raised", "reopened")  # reasons that start escalation again at level 0
LEVEL_START = (*NEW_CYCLE, "escalated")  # notifications after which the next escalation is timed


@dataclass(frozen=True)
class Tracked:
    """One followed (open or acknowledged) alert."""

    alert: dict[str, Any]
    partition: int
    cycle_revision: int
    opened_at: int
    level: int = 0
    level_since: int = 0
    reminders: int = 0
    last_notified_at: int = 0
    raised_to_critical: bool = False
    pending_reason: str | None = None
    pending_key: str | None = None
    pending_since: int | None = None

    @property
    def alert_id(self) -> str:
        return str(self.alert["alert_id"])

    @property
    def severity(self) -> str:
        """Severity notifications use: the alert's, or critical once raise_after passed."""
        return "critical" if self.raised_to_critical else str(self.alert["severity"])

    def silenced(self, now: int) -> bool:
        until = self.alert.get("silenced_until")
        return until is not None and until > now

    def with_pending(self, reason: str, key: str, now: int) -> Tracked:
        return replace(self, pending_reason=reason, pending_key=key, pending_since=now)

    def without_pending(self) -> Tracked:
        return replace(self, pending_reason=None, pending_key=None, pending_since=None)

    def delivered_alert(self) -> dict[str, Any]:
        """The alert as notifications show it: the notifier's escalation level and severity."""
        return self.alert | {"escalation_level": self.level, "severity": self.severity}


def on_revision(entry: Tracked | None, alert: dict[str, Any], reason: str | None, partition: int,
                now: int) -> Tracked | None:
    """The tracked state after alert revision ``alert`` (``reason``: its ``plantstream-notify``
    header); None once the alert is resolved (the table entry is removed)."""
    if entry is not None and alert["revision"] <= entry.alert["revision"]:
        return entry  # redelivered or stale revision: already applied
    if alert["state"] == "resolved":
        return None
    key = f"{alert['alert_id']}@{alert['revision']}"
    if entry is None or (reason in NEW_CYCLE and alert["state"] == "open"):
        fresh = Tracked(alert=alert, partition=partition, cycle_revision=alert["revision"],
                        opened_at=alert["updated_at"], level_since=alert["updated_at"],
                        last_notified_at=alert["updated_at"])
        return fresh.with_pending(reason, key, now) if reason and _may_notify(fresh, now) else fresh
    entry = replace(entry, alert=alert, partition=partition)
    if not _may_notify(entry, now):
        return entry.without_pending()  # acknowledged or silenced: nothing still to send
    if reason and entry.pending_key is None:
        return entry.with_pending(reason, key, now)
    return entry  # a pending notification goes out with this newer content, under its own key


def mark_sent(entry: Tracked, key: str, now: int) -> Tracked:
    """The state after the notification ``key`` was delivered (or given up) at ``now``; a
    notification superseded meanwhile (the alert was re-opened) leaves the state alone."""
    if entry.pending_key != key:
        return entry
    level_since = now if entry.pending_reason in LEVEL_START else entry.level_since
    return replace(entry, last_notified_at=now, level_since=level_since).without_pending()


def _may_notify(entry: Tracked, now: int) -> bool:
    return entry.alert["state"] == "open" and not entry.silenced(now)


class TrackedCodec:
    """Tracked <-> ``notifier_open_alert`` Avro bytes (the table value; never pickle)."""

    def __init__(self, codec: AvroCodec | None = None) -> None:
        self.codec = codec or AvroCodec()

    def encode(self, t: Tracked) -> bytes:
        a = t.alert
        return self.codec.encode(SCHEMA, {
            "alert_id": a["alert_id"], "tenant": a["tenant"], "site": a["site"], "machine": a["machine"],
            "partition": t.partition, "alert": self.codec.encode("alert_event", a),
            "cycle_revision": t.cycle_revision, "opened_at": t.opened_at, "level": t.level,
            "level_since": t.level_since, "reminders": t.reminders, "last_notified_at": t.last_notified_at,
            "raised_to_critical": t.raised_to_critical, "pending_reason": t.pending_reason,
            "pending_key": t.pending_key, "pending_since": t.pending_since})

    def decode(self, data: bytes) -> Tracked:
        r = self.codec.decode(data, SCHEMA)
        return Tracked(alert=self.codec.decode(r["alert"], "alert_event"), partition=r["partition"],
                       cycle_revision=r["cycle_revision"], opened_at=r["opened_at"], level=r["level"],
                       level_since=r["level_since"], reminders=r["reminders"],
                       last_notified_at=r["last_notified_at"], raised_to_critical=r["raised_to_critical"],
                       pending_reason=r["pending_reason"], pending_key=r["pending_key"],
                       pending_since=r["pending_since"])
