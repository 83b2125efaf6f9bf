"""The alert book: de-duplication, throttling, auto-resolve, re-open, commands. (Escalation and
reminders are the notifier's: tests/notifier/test_schedule.py.)"""

from __future__ import annotations

import pytest

from maintenance.lifecycle import AlertBook, Policy
from maintenance.machine import MachineState, RuleSet, SensorReadings, state_codec
from maintenance.rules import Finding
from plantstream.alertstate import InvalidCommand

S = 1_000_000
POLICY = Policy(quiet_s=600, update_every_s=60, calm_s=300)


def finding(severity: str = "warning", ts: int = 0, count: int = 1, sensor: str = "vib",
            rule: str = "limit") -> Finding:
    return Finding(rule, sensor, severity, f"{sensor} high", ts, {"value": 1.0}, count, "Check it.")


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


def test_severity_rises_at_once_and_falls_only_after_the_calm_period() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding(), 0, POLICY)
    up = book.apply(finding("critical"), S, POLICY)
    assert [(e.record["severity"], e.notify) for e in up] == [("critical", "severity_raised")]
    out = []
    for t in range(100, 300, 50):  # back to warning, but within the calm period: it holds
        out += book.apply(finding("warning"), t * S, POLICY) + book.tick(t * S + 1, POLICY)
    assert book.alerts[("condition", "*")].severity == "critical"
    assert {e.record["severity"] for e in out} <= {"critical"}
    down = book.apply(finding("warning"), 302 * S, POLICY)  # 301 s after the last critical finding
    assert [(e.record["severity"], e.notify) for e in down] == [("warning", None)]
    assert down[0].record["revision"] == out[-1].record["revision"] + 1  # a revision of the same alert
    assert "severity lowered to warning" in down[0].record["note"]
    again = book.apply(finding("critical"), 310 * S, POLICY)  # the same alert, up again at once
    assert [(e.record["alert_id"], e.record["severity"], e.notify) for e in again] == [
        ("t/s/m/limit/vib#1", "critical", "severity_raised")]


def test_a_worse_contribution_that_goes_quiet_lowers_the_severity_on_the_clock() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding("critical", sensor="vib"), 0, POLICY)
    lowered = []
    for t in range(0, 700, 30):  # only the temperature warning keeps being seen
        seen = book.apply(finding("warning", ts=t, sensor="temp", rule="persistent_anomaly"), t * S, POLICY)
        lowered += [e for e in seen + book.tick(t * S, POLICY) if e.record["severity"] == "warning"]
    assert len(book.alerts) == 1
    first = lowered[0].record  # one fall, then plain updates at the warning severity
    assert "severity lowered to warning" in first["note"] and first["updated_at"] > 300 * S
    rec = lowered[-1].record
    assert rec["state"] == "open" and rec["sensors"] == ["temp", "vib"] and lowered[0].notify is None


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


def test_a_critical_alert_is_latched_until_a_person_resolves_it() -> None:
    """ISA-18.2 latching: once critical, a cleared condition does not resolve the alert; it says
    so once and waits for a person. A warning alert still auto-resolves (above)."""
    book = AlertBook("t", "s", "m")
    aid = book.apply(finding("warning"), 0, POLICY)[0].record["alert_id"]
    raised = book.apply(finding("critical", ts=1), 10 * S, POLICY)
    assert [(e.record["severity"], e.record["evidence"].get("latched")) for e in raised] == [
        ("critical", 1.0)]
    cleared = book.tick(620 * S, POLICY)  # not seen for quiet_s
    assert [(e.record["state"], e.record["evidence"].get("cleared")) for e in cleared] == [("open", 1.0)]
    assert "stays until a person resolves it" in cleared[0].record["note"]
    assert book.tick(5000 * S, POLICY) == []  # said once; still open, not forgotten
    assert book.get(aid).state == "open"
    again = book.apply(finding("warning", ts=2), 5100 * S, POLICY)  # the condition is back
    assert "cleared" not in again[0].record["evidence"]
    resolved = book.command(cmd(aid, "resolve"), 5200 * S)
    assert resolved is not None and resolved.record["state"] == "resolved"
    assert book.tick(5300 * S, POLICY) == []
    unlatched = AlertBook("t", "s", "m2")
    unlatched.apply(finding("critical"), 0, Policy(quiet_s=600, latch_critical=False))
    gone = unlatched.tick(600 * S, Policy(quiet_s=600, latch_critical=False))
    assert [e.record["state"] for e in gone] == ["resolved"]


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


def test_the_book_never_escalates_or_reminds_the_notifier_does() -> None:
    book = AlertBook("t", "s", "m")
    book.apply(finding("critical"), 0, POLICY)
    book.apply(finding("warning", sensor="temp", rule="stuck_sensor"), 0, POLICY)
    out = []
    for t in range(10, 5000, 10):  # the conditions keep being seen, the clock runs, nobody acknowledges
        out += book.apply(finding("critical", ts=t), t * S, POLICY)
        out += book.apply(finding("warning", ts=t, sensor="temp", rule="stuck_sensor"), t * S, POLICY)
        out += book.tick(t * S, POLICY)
    assert out and all(e.notify is None for e in out)  # plain updates only
    levels = {(e.record["severity"], e.record["escalation_level"]) for e in out}
    assert levels == {("critical", 0), ("warning", 0)}
    assert all("reminders" not in e.record["evidence"] for e in out)


def test_machine_state_round_trips_through_the_safe_state_codec() -> None:
    state = MachineState("t", "s", "m", partition=2)
    batch = SensorReadings("t", "s", "m", "", 0, None, ["temp", "temp"], [0, 1], [120.0, float("nan")])
    specs = {"temp": {"unit": "degC", "critical_high": 95.0}}
    out = state.on_readings(batch, specs, RuleSet(), 0, POLICY)
    assert [(e.record["rule"], e.record["severity"]) for e in out] == [("limit", "critical")]
    raw = state_codec().encode(state)
    assert not raw.startswith(b"\x80")  # not a pickle
    restored = state_codec().decode(raw)
    assert isinstance(restored, MachineState) and restored.partition == 2
    assert restored.book.alerts[("condition", "*")].occurrences == 1  # the NaN reading was skipped
    more = SensorReadings("t", "s", "m", "", 60_000_000, None, ["temp"], [60_000_000], [121.0])
    assert [e.record for e in restored.on_readings(more, specs, RuleSet(), 70_000_000, POLICY)] == \
        [e.record for e in state.on_readings(more, specs, RuleSet(), 70_000_000, POLICY)]
