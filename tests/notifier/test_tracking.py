"""The open-alert table's transitions: every revision updates the followed alert; the notify
header records a pending notification; acknowledged / silenced / resolved revisions change or
remove the entry; redeliveries change nothing; the table value is Avro, never pickle."""

from __future__ import annotations

from notifier_support import S, revision

from notifier.tracking import Tracked, TrackedCodec, mark_sent, on_revision


def test_raise_records_a_pending_notification_keyed_by_revision() -> None:
    e = on_revision(None, revision(1, 10), "raised", 3, 11 * S)
    assert e is not None
    assert (e.pending_reason, e.pending_key, e.pending_since) == (
        "raised", "acme/p1/pump-01/limit/temp#1@1", 11 * S)
    assert (e.partition, e.cycle_revision, e.level, e.opened_at, e.level_since) == (3, 1, 0, 10 * S, 10 * S)


def test_plain_updates_refresh_the_alert_without_notifying() -> None:
    e = mark_sent(on_revision(None, revision(1, 0), "raised", 0, 0), "acme/p1/pump-01/limit/temp#1@1", 1 * S)
    e2 = on_revision(e, revision(2, 5), None, 0, 5 * S)
    assert e2 is not None and e2.alert["revision"] == 2 and e2.pending_key is None
    assert (e2.level_since, e2.last_notified_at) == (1 * S, 1 * S)  # timers untouched


def test_redelivered_or_older_revisions_change_nothing() -> None:
    e = on_revision(None, revision(2, 0), "severity_raised", 0, 0)
    assert on_revision(e, revision(2, 0), "severity_raised", 0, 9 * S) is e
    assert on_revision(e, revision(1, 0), "raised", 0, 9 * S) is e


def test_acknowledged_drops_the_pending_notification_and_resolved_removes_the_entry() -> None:
    e = on_revision(None, revision(1, 0), "raised", 0, 0)
    acked = on_revision(e, revision(2, 1, state="acknowledged", actor="ana"), None, 0, 1 * S)
    assert acked is not None and acked.pending_key is None and acked.alert["state"] == "acknowledged"
    assert on_revision(acked, revision(3, 2, state="resolved"), None, 0, 2 * S) is None
    assert on_revision(None, revision(4, 3, state="resolved"), None, 0, 3 * S) is None


def test_silence_drops_the_pending_notification_and_a_reopen_starts_a_new_cycle() -> None:
    e = on_revision(None, revision(1, 0), "raised", 0, 0)
    silenced = on_revision(e, revision(2, 1, silenced_until=100 * S), None, 0, 1 * S)
    assert silenced is not None and silenced.pending_key is None and silenced.silenced(50 * S)
    escalated = Tracked(**{**silenced.__dict__, "level": 2, "reminders": 3, "raised_to_critical": True})
    reopened = on_revision(escalated, revision(5, 200), "reopened", 1, 200 * S)
    assert reopened is not None
    assert (reopened.cycle_revision, reopened.level, reopened.reminders, reopened.raised_to_critical) == (
        5, 0, 0, False)
    assert (reopened.pending_reason, reopened.pending_key, reopened.partition) == (
        "reopened", "acme/p1/pump-01/limit/temp#1@5", 1)


def test_a_pending_notification_keeps_its_key_and_window_but_shows_the_newest_revision() -> None:
    e = on_revision(None, revision(1, 0), "raised", 0, 0)
    e2 = on_revision(e, revision(2, 1, severity="critical"), "severity_raised", 0, 1 * S)
    assert e2 is not None and (e2.pending_reason, e2.pending_key, e2.pending_since) == (
        "raised", "acme/p1/pump-01/limit/temp#1@1", 0)
    assert e2.delivered_alert()["revision"] == 2


def test_mark_sent_clears_only_the_notification_that_was_sent() -> None:
    e = on_revision(None, revision(1, 0), "raised", 0, 0)
    assert mark_sent(e, "other@9", 5 * S) is e  # superseded meanwhile: left alone
    sent = mark_sent(e, "acme/p1/pump-01/limit/temp#1@1", 5 * S)
    assert sent.pending_key is None and (sent.level_since, sent.last_notified_at) == (5 * S, 5 * S)


def test_table_value_is_avro_and_round_trips() -> None:
    codec = TrackedCodec()
    e = on_revision(None, revision(1, 0, silenced_until=None), "raised", 2, 0)
    assert e is not None
    raw = codec.encode(e)
    assert raw[:2] == b"\xc3\x01"  # Avro single-object encoding, not pickle
    assert codec.decode(raw) == e
