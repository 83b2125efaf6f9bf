"""The alert book: de-duplication, throttling, auto-resolve, re-open, commands, escalation."""

from __future__ import annotations

import pytest

from maintenance.lifecycle import AlertBook, Escalation, Policy
from maintenance.machine import MachineState, RuleSet
from maintenance.rules import Finding
from plantstream.alertstate import InvalidCommand

S = 1_000_000
POLICY = Policy(quiet_s=600, update_every_s=60,
                escalation={"critical": Escalation(after_s=300, max_level=2, remind_every_s=900),
                            "warning": Escalation(raise_after_s=3600)})


def finding(severity: str = "warning", ts: int = 0, count: int = 1, sensor: str = "vib") -> Finding:
    return Finding("limit", sensor, severity, f"{sensor} high", ts, {"value": 1.0}, count, "Check it.")


def cmd(alert_id: str, action: str, cid: str = "c1", until: int | None = None) -> dict:
    return {"command_id": cid, "alert_id": alert_id, "action": action, "actor": "ana", "reason": "why",
            "until": until}


def test_repeats_update_one_alert_and_plain_updates_are_throttled() -> None:
    book = AlertBook("t", "s", "m")
    first = book.apply(finding(), 0, POLICY)
    assert [(e.record["revision"], e.notify) for e in first] == [(1, "raised")]
    assert first[0].record["alert_id"] == "t/s/m/limit/vib#1"
    assert book.apply(finding(ts=5), 10 * S, POLICY) == []  # within update_every_s: state only
    assert book.apply(finding(ts=6), 20 * S, POLICY) == []
    flushed = book.tick(70 * S, POLICY)
    assert [(e.record["revision"], e.record["occurrences"], e.record["last_seen"], e.notify)
            for e in flushed] == [(2, 3, 6, None)]
    assert book.tick(80 * S, POLICY) == []  # nothing new: nothing emitted


def test_severity_rise_is_emitted_at_once_and_never_falls() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding(), 0, POLICY)
    up = book.apply(finding("critical"), S, POLICY)
    assert [(e.record["severity"], e.notify) for e in up] == [("critical", "severity_raised")]
    book.apply(finding("warning"), 100 * S, POLICY)
    assert book.alerts[("limit", "vib")].severity == "critical"


def test_quiet_alert_auto_resolves_then_recurrence_reopens_or_starts_new_episode() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding(), 0, POLICY)
    resolved = book.tick(600 * S, POLICY)
    assert [(e.record["state"], e.record["actor"]) for e in resolved] == [("resolved", None)]
    assert "auto-resolved" in resolved[0].record["note"]
    reopened = book.apply(finding(ts=1), 700 * S, POLICY)  # within quiet_s of resolution
    rec = reopened[0].record
    assert (rec["alert_id"], rec["state"], rec["revision"], rec["occurrences"], reopened[0].notify) == (
        "t/s/m/limit/vib#1", "open", 3, 2, "reopened")
    assert rec["evidence"]["reopened"] == 1.0
    book.tick(1300 * S, POLICY)  # resolved again
    book.tick(2000 * S, POLICY)  # long past: forgotten (episode counter kept)
    new = book.apply(finding(ts=2), 2001 * S, POLICY)
    assert (new[0].record["alert_id"], new[0].record["revision"]) == ("t/s/m/limit/vib#2", 1)


def test_commands_follow_the_lifecycle_and_are_idempotent() -> None:
    book = AlertBook("t", "s", "m")
    aid = book.apply(finding(), 0, POLICY)[0].record["alert_id"]
    with pytest.raises(InvalidCommand, match="no alert nope"):
        book.command(cmd("nope", "acknowledge"), S)
    acked = book.command(cmd(aid, "acknowledge"), S)
    assert acked is not None and (acked.record["state"], acked.record["actor"]) == ("acknowledged", "ana")
    assert book.command(cmd(aid, "acknowledge"), 2 * S) is None  # same command id redelivered
    with pytest.raises(InvalidCommand, match="only open alerts can be acknowledged") as exc:
        book.command(cmd(aid, "acknowledge", "c2"), 2 * S)
    assert exc.value.reason == "acknowledged_cannot_acknowledge"
    with pytest.raises(InvalidCommand, match="'until' in the future"):
        book.command(cmd(aid, "silence", "c3", until=S), 2 * S)
    assert book.command(cmd(aid, "resolve", "c4"), 3 * S).record["state"] == "resolved"
    with pytest.raises(InvalidCommand, match="is resolved"):
        book.command(cmd(aid, "resolve", "c5"), 4 * S)


def test_unacknowledged_critical_escalates_level_by_level_then_reminds() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding("critical"), 0, POLICY)
    keep = 0
    events = []
    for t in range(10, 2500, 10):  # the condition keeps being seen, the clock runs
        book.apply(finding("critical", ts=t), t * S, POLICY)
        events += [(t, e.notify, e.record["escalation_level"]) for e in book.tick(t * S, POLICY) if e.notify]
        keep = t
    assert events[:2] == [(300, "escalated", 1), (600, "escalated", 2)]
    assert [t for t, n, _ in events if n == "reminder"] == [1500, 2400]
    assert keep == 2490


def run_clock(book: AlertBook, start: int, end: int) -> list:
    """The condition keeps being seen every 10 s while the timer ticks; return notifying emissions."""
    out = []
    for t in range(start, end, 10):
        book.apply(finding("critical", ts=t), t * S, POLICY)
        out += [e for e in book.tick(t * S, POLICY) if e.notify]
    return out


def test_acknowledged_or_silenced_alerts_do_not_escalate() -> None:
    book = AlertBook("t", "s", "m")
    aid = book.apply(finding("critical"), 0, POLICY)[0].record["alert_id"]
    book.command(cmd(aid, "silence", until=1000 * S), S)
    assert run_clock(book, 10, 1000) == []
    assert [e.notify for e in run_clock(book, 1000, 1310)] == ["escalated"]  # 300 s after the silence ended
    book.command(cmd(aid, "acknowledge", "c2"), 1311 * S)
    assert run_clock(book, 1320, 4000) == []


def test_warning_left_unacknowledged_becomes_critical() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding("warning"), 0, POLICY)
    book.apply(finding("warning"), 3500 * S, POLICY)
    out = book.tick(3600 * S, POLICY)
    assert [(e.record["severity"], e.notify) for e in out] == [("critical", "severity_raised")]


def test_machine_state_skips_redelivered_offsets_and_round_trips() -> None:
    state = MachineState("t", "s", "m", partition=2)
    batch = {"ingest_time": 0, "readings": [{"sensor": "temp", "ts": 0, "value": 120.0},
                                            {"sensor": "temp", "ts": 1, "value": float("nan")}]}
    specs = {"temp": {"unit": "degC", "critical_high": 95.0}}
    assert state.fresh("readings", 10)
    out = state.on_readings(batch, specs, RuleSet(), 0, POLICY)
    assert [(e.record["rule"], e.record["severity"]) for e in out] == [("limit", "critical")]
    assert not state.fresh("readings", 10) and not state.fresh("readings", 9) and state.fresh("readings", 11)
    restored = MachineState.loads(state.dumps())
    assert restored.partition == 2 and restored.offsets == {"readings": 11}
    assert restored.book.alerts[("limit", "temp")].occurrences == 1  # the NaN reading was skipped
