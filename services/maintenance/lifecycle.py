"""The alert book of one machine: findings in, alert revisions out.

Rules of the book (documented in the README):
- At most one alert per machine problem is active (open or acknowledged): findings of several
  rules and sensors that belong together (maintenance.problems: the machine's condition, one
  sensor's fault, one gateway's clock, the machine's silence) are contributions to one alert,
  with the sensors as evidence and a title in plain words. Repeats update it: occurrences,
  last_seen, evidence. Plain updates are throttled to one revision per ``update_every_s``; a
  new contribution (another sensor or rule joins the problem) is emitted at once.
- Severity is the worst of its contributions still seen. A rise is emitted at once; a fall
  only once the worse contribution has not been reported for ``calm_s`` (hysteresis: a
  condition hovering at a limit cannot make the alert chatter between severities).
- Auto-resolve: an active alert with no finding for ``quiet_s`` (input clock) is resolved by
  the service (actor null, note says why).
- Latch (ISA-18.2): an alert that was ever critical is not auto-resolved. When its condition
  has cleared for ``quiet_s`` it says so once (note, ``evidence.cleared``) and stays until a
  person resolves it: a critical condition that went away by itself still needs a look.
- Flap control: a condition that recurs within ``quiet_s`` of its alert's resolution
  re-opens the *same* alert (same alert_id, next revision, occurrences continue,
  evidence.reopened counts re-openings). Later recurrences start a new episode: alert_id ends
  in ``#<episode>``, revision starts again at 1. The alert_id names the rule and sensor (or
  gateway) of the finding that opened it: ``tenant/site/machine/rule/sensor#episode``.
- Notify: a revision people should hear about (raised, reopened, severity_raised) says so in
  :attr:`Emission.notify`; the service puts it in the ``plantstream-notify`` header. Who hears
  about it and when (routes, grouping, escalation levels, reminders until acknowledged, quiet
  hours) is the notifier service's business: alerts are emitted at escalation level 0.

Every emitted record is a full snapshot, so (alert_id, revision) identifies it and consumers
can de-duplicate redeliveries by that pair.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from maintenance import problems
from maintenance.problems import Contribution, Problem
from maintenance.rules import SEVERITIES, Finding, severity_rank
from plantstream.alertstate import check_command


@dataclass(frozen=True)
class Policy:
    quiet_s: float = 3600.0
    update_every_s: float = 60.0
    calm_s: float = 900.0  # a worse contribution unseen this long no longer holds the severity up
    latch_critical: bool = True  # an alert that was ever critical waits for a person to resolve it


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
    latched: bool = False  # it was critical: only a person resolves it
    cleared_at: int = 0  # latched and its condition not seen for quiet_s since (0: not cleared)
    dirty: bool = False
    problem: Problem = ("", "")
    contributions: dict[str, Contribution] = field(default_factory=dict)
    sensors: list[str] = field(default_factory=list)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Alerts stored before grouping (one per rule and sensor) decode with no contributions:
        they keep their title and evidence until they auto-resolve."""
        self.__dict__.update({"problem": ("", ""), "contributions": {}, "sensors": [], **state})

    def record(self) -> dict[str, Any]:
        evidence = dict(self.evidence)
        if self.reopened:
            evidence["reopened"] = float(self.reopened)
        if self.latched:
            evidence["latched"] = 1.0
        if self.cleared_at:
            evidence["cleared"] = 1.0
        return {
            "alert_id": self.alert_id, "revision": self.revision, "tenant": self.tenant, "site": self.site,
            "machine": self.machine, "sensors": list(self.sensors or [self.sensor]), "rule": self.rule,
            "severity": self.severity,
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
    """All alerts of one machine (active ones and those resolved less than ``quiet_s`` ago),
    by machine problem."""

    def __init__(self, tenant: str, site: str, machine: str) -> None:
        self.tenant, self.site, self.machine = tenant, site, machine
        self.alerts: dict[Problem, Alert] = {}
        self.episodes: dict[tuple[str, str], int] = {}
        self.commands_seen: deque[str] = deque(maxlen=512)

    def get(self, alert_id: str) -> Alert | None:
        return next((a for a in self.alerts.values() if a.alert_id == alert_id), None)

    def active(self, group: str) -> bool:
        """Whether an alert of this problem group (e.g. ``condition``) is active."""
        return any(a.active and a.problem[0] == group for a in self.alerts.values())

    def problem_of(self, f: Finding) -> tuple[Problem, bool]:
        """The finding's problem, and whether the finding is only secondary evidence of it:
        the anomaly detector's findings on a sensor with an active sensor fault (its stale or
        missing value causes them) or while the machine's gateway clock is wrong; a no-data
        finding whose silent sensors all have an active sensor fault already (the dropout
        detector saw the silence first: one silent sensor is one alert)."""
        problem = problems.problem_of(f)
        if problem[0] == "no_data" and f.sensors:
            faults = [self.alerts.get(("sensor_fault", s)) for s in f.sensors]
            if all(a is not None and a.active for a in faults):
                return ("sensor_fault", f.sensors[0]), True
        if problem[0] == "condition" and f.rule == "persistent_anomaly":
            fault = self.alerts.get(("sensor_fault", f.sensor))
            if fault is not None and fault.active:
                return ("sensor_fault", f.sensor), True
            clock = next((k for k, a in self.alerts.items() if k[0] == "clock_skew" and a.active), None)
            if clock is not None:
                return clock, True
        return problem, False

    # findings -------------------------------------------------------------------------------
    def apply(self, f: Finding, now: int, policy: Policy, unit: str = "") -> list[Emission]:
        key, secondary = self.problem_of(f)
        a = self.alerts.get(key)
        if a is not None and not a.active and now - a.resolved_at > policy.quiet_s * 1e6:
            a = None
        if a is None:
            return [self._open(key, f, now, policy, unit)]
        notify = None
        if not a.active:  # recurrence soon after resolution: re-open, keep the history
            a.state, a.actor, a.note = "open", None, "re-opened: condition recurred"
            a.reopened += 1
            a.opened_at = now
            a.escalation_level, a.silenced_until = 0, None
            notify = "reopened"
        part = _part(f)
        c = a.contributions.get(part)
        joined = c is None  # news: another sensor or rule adds to the problem (and its title)
        if c is None:
            a.contributions[part] = problems.contribution(f, unit, now, secondary)
        else:
            c.update(f, unit, now, policy.calm_s * 1e6)
        a.occurrences += f.count
        a.last_seen = max(a.last_seen, f.ts)
        a.last_finding_at = now
        a.cleared_at = 0
        before = a.severity
        self._describe(a, now, policy)
        rose = severity_rank(a.severity) > severity_rank(before)
        if rose:
            notify = notify or ("severity_raised" if a.state == "open" else None)
        if notify or joined or a.severity != before or now - a.updated_at >= policy.update_every_s * 1e6:
            return [self._emit(a, now, notify)]
        a.dirty = True
        return []

    def _describe(self, a: Alert, now: int, policy: Policy) -> None:
        """Severity, title, evidence, action and sensors from the alert's contributions."""
        parts = list(a.contributions.values())
        if not parts:
            return
        calm = policy.calm_s * 1e6
        worst = max(c.weight(now, calm) for c in parts)
        if worst >= 0 and SEVERITIES[worst] != a.severity:
            if severity_rank(SEVERITIES[worst]) < severity_rank(a.severity):
                a.note = f"severity lowered to {SEVERITIES[worst]}: nothing {a.severity} seen for " \
                         f"{policy.calm_s / 60:.0f} min"
            a.severity = SEVERITIES[worst]
        if a.severity == "critical" and policy.latch_critical:
            a.latched = True
        head = problems.headline(parts, now, calm)
        a.rule, a.sensor = head.rule, head.sensor
        a.title = problems.title(parts, now, calm)
        a.evidence = problems.evidence(parts, now, calm)
        a.recommended_action = problems.action(parts, now, calm) or a.recommended_action
        a.sensors = problems.sensors(parts, now, calm)

    def _open(self, key: Problem, f: Finding, now: int, policy: Policy, unit: str) -> Emission:
        subject = key[1] if key[0] == "clock_skew" else (f.sensor or "*")
        opener = (f.rule, subject)
        episode = self.episodes.get(opener, 0) + 1
        self.episodes[opener] = episode
        a = Alert(alert_id=f"{self.tenant}/{self.site}/{self.machine}/{f.rule}/{subject}#{episode}",
                  tenant=self.tenant, site=self.site, machine=self.machine, rule=f.rule,
                  sensor=f.sensor or "*",
                  severity=f.severity, title=f.title, first_seen=f.ts, last_seen=f.ts,
                  evidence=dict(f.evidence), recommended_action=f.action, opened_at=now,
                  occurrences=f.count, last_finding_at=now, problem=key,
                  contributions={_part(f): problems.contribution(f, unit, now)})
        self._describe(a, now, policy)
        self.alerts[key] = a
        return self._emit(a, now, "raised")

    def _emit(self, a: Alert, now: int, notify: str | None) -> Emission:
        a.revision += 1
        a.updated_at = now
        a.dirty = False
        if notify and (a.state != "open" or a.silenced(now)):
            notify = None
        return Emission(a.record(), notify)

    def note_condition(self, note: str, now: int) -> list[Emission]:
        """Say ``note`` on the machine's active condition alert (if any), e.g. that the anomaly
        model re-baselined: its findings stop, and the alert resolves as usual once quiet."""
        a = self.alerts.get(("condition", "*"))
        if a is None or not a.active:
            return []
        a.note = note
        return [self._emit(a, now, None)]

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
                if a.latched:  # said once; it waits for a person's resolve
                    if not a.cleared_at:
                        a.cleared_at = now
                        a.note = (f"condition cleared (not seen for {policy.quiet_s:.0f} s); it was "
                                  "critical, so it stays until a person resolves it")
                        out.append(self._emit(a, now, None))
                    continue
                a.state, a.resolved_at, a.actor = "resolved", now, None
                a.note = f"auto-resolved: condition not seen for {policy.quiet_s:.0f} s"
                out.append(self._emit(a, now, None))
                continue
            before = a.severity
            self._describe(a, now, policy)
            if a.severity != before:  # the worse contribution went calm: the severity falls
                out.append(self._emit(a, now, None))
                continue
            if a.dirty and now - a.updated_at >= policy.update_every_s * 1e6:
                out.append(self._emit(a, now, None))
        return out


def _part(f: Finding) -> str:
    """The contribution a finding updates: one per rule, sensor and anomaly detector."""
    return f"{f.rule}:{f.sensor}:{f.detector}" if f.detector else f"{f.rule}:{f.sensor}"
