"""Alert revisions as maintenance writes them, a clock that drives the notifier's pure logic
(tracking + schedule) the way its agent and timer do, without Kafka, and the notifier as a
subprocess for the integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receivers import Service

from notifier.schedule import decide, due_groups
from notifier.tracking import Tracked, mark_sent, on_revision
from plantstream.notify import NotifyConfig

S = 1_000_000


def revision(rev: int, at_s: float, *, state: str = "open", severity: str = "critical",
             machine: str = "pump-01", rule: str = "limit", silenced_until: int | None = None,
             **extra: Any) -> dict[str, Any]:
    aid = f"acme/p1/{machine}/{rule}/temp#1"
    return {"alert_id": aid, "revision": rev, "tenant": "acme", "site": "p1", "machine": machine,
            "sensors": ["temp"], "rule": rule, "severity": severity, "state": state,
            "title": f"{rule} on {machine}", "first_seen": 0, "last_seen": int(at_s * S), "occurrences": rev,
            "escalation_level": 0, "evidence": {"value": 99.0}, "recommended_action": None, "actor": None,
            "note": None, "silenced_until": silenced_until, "updated_at": int(at_s * S)} | extra


@dataclass
class Clock:
    """The open-alert table plus the notifications sent, driven by revisions and ticks."""

    cfg: NotifyConfig
    table: dict[bytes, Tracked] = field(default_factory=dict)
    # (t, reason, key, level, alert ids of the group) per notification sent
    sent: list[tuple[float, str, str, int, list[str]]] = field(default_factory=list)

    def revision(self, alert: dict[str, Any], reason: str | None, at_s: float, partition: int = 0) -> None:
        key = alert["alert_id"].encode()
        after = on_revision(self.table.get(key), alert, reason, partition, int(at_s * S))
        if after is None:
            self.table.pop(key, None)
        else:
            self.table[key] = after

    def tick(self, at_s: float) -> list[tuple[float, str, str, int, list[str]]]:
        now = int(at_s * S)
        self.table = {k: decide(e, now, self.cfg) for k, e in self.table.items()}
        out = []
        for group in due_groups(list(self.table.items()), now, self.cfg):
            for _, e in group:
                assert e.pending_key and e.pending_reason
                out.append((at_s, e.pending_reason, e.pending_key, e.level, [m.alert_id for _, m in group]))
            for k, e in group:
                self.table[k] = mark_sent(self.table[k], e.pending_key or "", now)
        self.sent += out
        return out


def start_notifier(env: dict[str, str], log: Path) -> Service:
    """``python -m notifier`` with the given environment; logs go to a file."""
    return Service(env, log, "notifier").start()
