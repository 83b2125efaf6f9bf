"""Escalation, reminders, raise-after, quiet hours and grouping, on an explicit clock.

The first three tests are the escalation tests that used to drive maintenance's alert book
(``tests/maintenance/test_lifecycle.py``), with the same policy and the same expected times:
the condition keeps being seen (plain update revisions every 10 s) while the timer ticks."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from notifier_support import Clock, S, revision

from plantstream.notify.config import parse_notify_config

POLICY = {"group_wait": 0,
          "escalation": {"critical": {"after": 300, "max_level": 2, "remind_every": 900},
                         "warning": {"raise_after": 3600}},
          "routes": [{"email": ["shift@x.test"]}]}
AID = "acme/p1/pump-01/limit/temp#1"


def run_clock(clock: Clock, start: int, end: int, first_rev: int, silenced_until: int | None = None) -> list:
    """Plain update revisions (full snapshots, as maintenance writes them) every 10 s while the
    timer ticks; return what was sent."""
    out = []
    for i, t in enumerate(range(start, end, 10)):
        clock.revision(revision(first_rev + i, t, silenced_until=silenced_until), None, t)
        out += clock.tick(t)
    return out


def test_unacknowledged_critical_escalates_level_by_level_then_reminds() -> None:
    clock = Clock(parse_notify_config(POLICY))
    clock.revision(revision(1, 0), "raised", 0)
    assert [(r, k) for _, r, k, _, _ in clock.tick(0)] == [("raised", f"{AID}@1")]
    events = [(t, r, lvl) for t, r, _, lvl, _ in run_clock(clock, 10, 2500, 2)]
    assert events[:2] == [(300, "escalated", 1), (600, "escalated", 2)]
    assert [t for t, r, _ in events if r == "reminder"] == [1500, 2400]
    assert [k for _, _, k, _, _ in clock.sent] == [  # stable, distinct keys: level and reminder number
        f"{AID}@1", f"{AID}@1/L1", f"{AID}@1/L2", f"{AID}@1/L2/R1", f"{AID}@1/L2/R2"]


def test_acknowledged_or_silenced_alerts_do_not_escalate() -> None:
    clock = Clock(parse_notify_config(POLICY))
    clock.revision(revision(1, 0), "raised", 0)
    clock.tick(0)
    clock.revision(revision(2, 1, silenced_until=1000 * S), None, 1)  # silence until t=1000
    assert run_clock(clock, 10, 1000, 3, silenced_until=1000 * S) == []
    out = run_clock(clock, 1000, 1310, 200, silenced_until=1000 * S)
    assert [(t, r) for t, r, _, _, _ in out] == [(1300, "escalated")]  # 300 s after the silence ended
    clock.revision(revision(300, 1311, state="acknowledged", actor="ana"), None, 1311)
    assert [e for t in range(1320, 4000, 10) for e in clock.tick(t)] == []


def test_warning_left_unacknowledged_is_notified_as_critical() -> None:
    clock = Clock(parse_notify_config(POLICY))
    clock.revision(revision(1, 0, severity="warning"), "raised", 0)
    clock.tick(0)
    clock.revision(revision(2, 3500, severity="warning"), None, 3500)
    assert clock.tick(3599) == []
    out = clock.tick(3600)
    assert [(r, k) for _, r, k, _, _ in out] == [("severity_raised", f"{AID}@1/critical")]
    entry = clock.table[AID.encode()]
    assert entry.delivered_alert()["severity"] == "critical" and entry.alert["severity"] == "warning"


def test_alerts_of_one_machine_within_group_wait_go_out_together() -> None:
    clock = Clock(parse_notify_config({"group_wait": 5, "routes": [{"email": ["a@x.test"]}]}))
    clock.revision(revision(1, 0, rule="limit"), "raised", 0)
    clock.revision(revision(1, 2, rule="trend_to_limit"), "raised", 2)
    clock.revision(revision(1, 3, machine="saw-01"), "raised", 3)
    assert clock.tick(4.9) == []
    out = clock.tick(5)  # the pump's window (opened at t=0) is over; the saw's is not
    assert {ids[0] for *_, ids in out} == {"acme/p1/pump-01/limit/temp#1"}
    assert [len(ids) for *_, ids in out] == [2, 2]  # one notification carrying both pump alerts
    assert [ids for *_, ids in clock.tick(8)] == [["acme/p1/saw-01/limit/temp#1"]]
    assert clock.tick(20) == []  # sent once


QUIET = {"group_wait": 0, "routes": [{"email": ["a@x.test"]}],
         "quiet_hours": {"start": "22:00", "end": "06:00", "tz": "Europe/Berlin", "severities": ["warning"]}}


def berlin(day: int, hh: int, mm: int = 0) -> float:
    return datetime(2026, 12, day, hh, mm, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()


def test_quiet_hours_hold_warnings_until_they_end_but_not_critical_alerts() -> None:
    clock = Clock(parse_notify_config(QUIET))
    t = berlin(1, 23)
    clock.revision(revision(1, t, severity="warning"), "raised", t)
    clock.revision(revision(1, t, severity="critical", machine="saw-01"), "raised", t)
    assert [ids for *_, ids in clock.tick(t)] == [["acme/p1/saw-01/limit/temp#1"]]  # critical goes out
    assert clock.tick(berlin(2, 5, 59)) == []  # the warning waits ...
    out = clock.tick(berlin(2, 6, 0))  # ... until quiet hours end at 06:00 local time
    assert [(r, ids) for _, r, _, _, ids in out] == [("raised", ["acme/p1/pump-01/limit/temp#1"])]


def test_quiet_hours_window_within_one_day_and_config_errors() -> None:
    cfg = parse_notify_config({"quiet_hours": {"start": "12:00", "end": "13:30", "tz": "UTC"}, "routes": []})
    q = cfg.quiet_hours
    assert q is not None and q.severities == {"info", "warning"}
    noon = int(datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp() * S)
    assert q.holds("warning", noon) and q.holds("info", noon + 89 * 60 * S)
    assert not q.holds("warning", noon + 90 * 60 * S) and not q.holds("critical", noon)
