"""The alert book of one machine: findings in, alert revisions out.

Rules of the book (documented in the README):
- At most one alert per (rule, sensor) is active (open or acknowledged). Repeats update it:
  occurrences, last_seen, evidence; severity only rises. Plain updates are throttled to one
  revision per ``update_every_s``; a rise in severity is emitted at once.
- Auto-resolve: an active alert with no finding for ``quiet_s`` (wall clock) is resolved by
  the service (actor null, note says why).
- Flap control: a condition that recurs within ``quiet_s`` of its alert's resolution
  re-opens the *same* alert (same alert_id, next revision, occurrences continue,
  evidence.reopened counts re-openings). Later recurrences start a new episode: alert_id ends
  in ``#<episode>``, revision starts again at 1.
- Notify: a revision people should hear about (raised, reopened, severity_raised) says so in
  :attr:`Emission.notify`; the service puts it in the ``plantstream-notify`` header. Who hears
  about it and when (routes, grouping, escalation levels, reminders until acknowledged, quiet
  hours) is the notifier service's business: alerts are emitted at escalation level 0.

Every emitted record is a full snapshot, so (alert_id, revision) identifies it and consumers
can de-duplicate redeliveries by that pair.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from maintenance.rules import Finding, severity_rank
from plantstream.alertstate import check_command


@dataclass(frozen=True)
class Policy:
    quiet_s: float = 3600.0
    update_every_s: float = 60.0


@dataclass
class Emission:
    """One alert revision to publish, and why people should hear about it (None: they need not)."""

    record: dict[str, Any]
    notify: str | None = None


@dataclass
class Alert:
    alert_id: str
    tenant: str
    site: str
    machine: str
    rule: str
    sensor: str
    severity: str
    title: str
    first_seen: int
    last_seen: int
    evidence: dict[str, float]
    recommended_action: str | None
    opened_at: int  # wall clock of the (re)opening, microseconds
    revision: int = 0
    state: str = "open"
    occurrences: int = 0
    escalation_level: int = 0
    actor: str | None = None
    note: str | None = None
    silenced_until: int | None = None
    updated_at: int = 0
    last_finding_at: int = 0
    resolved_at: int = 0
    reopened: int = 0
    dirty: bool = False

    def record(self) -> dict[str, Any]:
        evidence = dict(self.evidence)
        if self.reopened:
            evidence["reopened"] = float(self.reopened)
        return {
            "alert_id": self.alert_id, "revision": self.revision, "tenant": self.tenant, "site": self.site,
            "machine": self.machine, "sensors": [self.sensor], "rule": self.rule, "severity": self.severity,
            "state": self.state, "title": self.title, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "occurrences": self.occurrences,
            "escalation_level": self.escalation_level, "evidence": evidence,
            "recommended_action": self.recommended_action, "actor": self.actor, "note": self.note,
            "silenced_until": self.silenced_until, "updated_at": self.updated_at,
        }

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def silenced(self, now: int) -> bool:
        return self.silenced_until is not None and self.silenced_until > now


class AlertBook:
    """All alerts of one machine (active ones and those resolved less than ``quiet_s`` ago)."""

    def __init__(self, tenant: str, site: str, machine: str) -> None:
        self.tenant, self.site, self.machine = tenant, site, machine
        self.alerts: dict[tuple[str, str], Alert] = {}
        self.episodes: dict[tuple[str, str], int] = {}
        self.commands_seen: deque[str] = deque(maxlen=512)

    def get(self, alert_id: str) -> Alert | None:
        return next((a for a in self.alerts.values() if a.alert_id == alert_id), None)

    # findings -------------------------------------------------------------------------------
    def apply(self, f: Finding, now: int, policy: Policy) -> list[Emission]:
        key = (f.rule, f.sensor)
        a = self.alerts.get(key)
        if a is not None and not a.active and now - a.resolved_at > policy.quiet_s * 1e6:
            a = None
        if a is None:
            return [self._open(key, f, now)]
        notify = None
        if not a.active:  # recurrence soon after resolution: re-open, keep the history
            a.state, a.actor, a.note = "open", None, "re-opened: condition recurred"
            a.reopened += 1
            a.opened_at = now
            a.escalation_level, a.silenced_until = 0, None
            notify = "reopened"
        rose = severity_rank(f.severity) > severity_rank(a.severity)
        if rose:
            a.severity = f.severity
            notify = notify or ("severity_raised" if a.state == "open" else None)
        a.occurrences += f.count
        a.last_seen = max(a.last_seen, f.ts)
        a.evidence, a.title, a.last_finding_at = dict(f.evidence), f.title, now
        a.recommended_action = f.action or a.recommended_action
        if notify or rose or now - a.updated_at >= policy.update_every_s * 1e6:
            return [self._emit(a, now, notify)]
        a.dirty = True
        return []

    def _open(self, key: tuple[str, str], f: Finding, now: int) -> Emission:
        episode = self.episodes.get(key, 0) + 1
        self.episodes[key] = episode
        sensor = f.sensor or "*"
        a = Alert(alert_id=f"{self.tenant}/{self.site}/{self.machine}/{f.rule}/{sensor}#{episode}",
                  tenant=self.tenant, site=self.site, machine=self.machine, rule=f.rule, sensor=sensor,
                  severity=f.severity, title=f.title, first_seen=f.ts, last_seen=f.ts,
                  evidence=dict(f.evidence), recommended_action=f.action, opened_at=now,
                  occurrences=f.count, last_finding_at=now)
        self.alerts[key] = a
        return self._emit(a, now, "raised")

    def _emit(self, a: Alert, now: int, notify: str | None) -> Emission:
        a.revision += 1
        a.updated_at = now
        a.dirty = False
        if notify and (a.state != "open" or a.silenced(now)):
            notify = None
        return Emission(a.record(), notify)

    # commands -------------------------------------------------------------------------------
    def command(self, cmd: dict[str, Any], now: int) -> Emission | None:
        """Apply an alert_command; None for a redelivered command. Raises InvalidCommand."""
        if cmd["command_id"] in self.commands_seen:
            return None
        a = self.get(cmd["alert_id"])
        check_command(a.record() if a else None, cmd["alert_id"], cmd["action"], cmd.get("until"), now)
        assert a is not None
        self.commands_seen.append(cmd["command_id"])
        a.actor, a.note = cmd["actor"], cmd.get("reason")
        if cmd["action"] == "acknowledge":
            a.state = "acknowledged"
        elif cmd["action"] == "resolve":
            a.state, a.resolved_at = "resolved", now
        else:
            a.silenced_until = cmd["until"]
        return self._emit(a, now, None)

    # the clock ------------------------------------------------------------------------------
    def tick(self, now: int, policy: Policy) -> list[Emission]:
        out: list[Emission] = []
        for key, a in list(self.alerts.items()):
            if not a.active:
                if now - a.resolved_at > policy.quiet_s * 1e6:
                    del self.alerts[key]  # the episode counter stays in self.episodes
                continue
            if now - a.last_finding_at >= policy.quiet_s * 1e6:
                a.state, a.resolved_at, a.actor = "resolved", now, None
                a.note = f"auto-resolved: condition not seen for {policy.quiet_s:.0f} s"
                out.append(self._emit(a, now, None))
                continue
            if a.dirty and now - a.updated_at >= policy.update_every_s * 1e6:
                out.append(self._emit(a, now, None))
        return out
