"""Grouped delivery against real local receivers (HTTP and SMTP): one POST / e-mail per target
carrying every alert of the group, one attempt record per alert, ids from the item keys; and
the escalation config the notifier reads."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from typing import Any

import pytest
from notifier_support import revision
from receivers import WebhookReceiver, start_smtp

from plantstream.errors import ConfigError
from plantstream.notify import Escalation, Item, Notifier, verify
from plantstream.notify.config import parse_notify_config

# the test receivers listen on loopback, which webhooks may only reach when allowed
LOCAL_RECEIVERS = {"webhook_allow": ["127.0.0.0/8"]}


def deliver(config: dict[str, Any], items: list[Item]) -> list[dict[str, Any]]:
    published: list[dict[str, Any]] = []

    async def publish(rec: dict[str, Any]) -> None:
        published.append(rec)

    asyncio.run(Notifier(parse_notify_config(LOCAL_RECEIVERS | config), publish).deliver(items))
    return published


def test_a_group_is_one_signed_post_and_one_email_with_an_attempt_per_alert(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_TEST_HOOK_SECRET", "s3")
    hooks = WebhookReceiver()
    smtp, mail = start_smtp()
    a, b = revision(1, 0, rule="limit"), revision(4, 0, rule="trend_to_limit") | {"escalation_level": 1}
    items = [Item(a, "raised", f"{a['alert_id']}@1"), Item(b, "reminder", f"{b['alert_id']}@2/L1/R3")]
    try:
        attempts = deliver({"smtp": {"port": smtp.port},
                            "routes": [{"webhook": {"url": hooks.url("/in"),
                                                    "secret_env": "PLANTSTREAM_TEST_HOOK_SECRET"},
                                        "email": ["shift@x.test"]}]}, items)
    finally:
        hooks.stop()
        smtp.stop()
    (hook,) = hooks.received
    assert verify(hook.body, "s3", hook.headers)
    assert [(g["reason"], g["alert"]["alert_id"]) for g in hook.json["group"]] == [
        ("raised", a["alert_id"]), ("reminder", b["alert_id"])]
    assert hook.headers["Idempotency-Key"].startswith("group:")
    (msg,) = [message_from_bytes(raw, policy=policy.default) for _, _, raw in mail.messages]
    assert msg["Subject"].strip().endswith("(+1 more)")
    assert "Why now:   reminder (escalation level 1)" in msg.get_content()
    assert sorted(r["attempt_id"] for r in attempts) == sorted([
        f"{a['alert_id']}@1/webhook/{hooks.url('/in')}/1", f"{a['alert_id']}@1/email/shift@x.test/1",
        f"{b['alert_id']}@2/L1/R3/webhook/{hooks.url('/in')}/1",
        f"{b['alert_id']}@2/L1/R3/email/shift@x.test/1"])
    assert {(r["outcome"], r["escalation_level"]) for r in attempts} == {("delivered", 0), ("delivered", 1)}


def test_reminders_get_their_own_idempotency_key() -> None:
    hooks = WebhookReceiver()
    a = revision(1, 0)
    try:
        for key in (f"{a['alert_id']}@1/L0/R1", f"{a['alert_id']}@1/L0/R2"):
            deliver({"routes": [{"webhook": {"url": hooks.url("/in")}}]}, [Item(a, "reminder", key)])
    finally:
        hooks.stop()
    assert [h.headers["Idempotency-Key"] for h in hooks.received] == [
        f"{a['alert_id']}@1/L0/R1", f"{a['alert_id']}@1/L0/R2"]
    assert "group" not in hooks.received[0].json  # a single alert keeps the plain document


def test_escalation_config_is_parsed_into_typed_policies() -> None:
    escalation = {"critical": {"after": "15m", "max_level": 2, "remind_every": "30m"},
                  "warning": {"raise_after": "1d"}}
    cfg = parse_notify_config({"escalation": escalation, "group_wait": "30s", "routes": []})
    assert cfg.escalation == {"critical": Escalation(900.0, 2, 1800.0, 0.0),
                              "warning": Escalation(0.0, 1, 0.0, 86400.0)}
    assert cfg.group_wait_s == 30.0 and cfg.quiet_hours is None


@pytest.mark.parametrize("doc, message", [
    ({"quiet_hours": {"start": "25:00", "end": "06:00"}}, "not a time of day"),
    ({"quiet_hours": {"start": "22:00"}}, "with 'start' and 'end'"),
    ({"quiet_hours": {"start": "22:00", "end": "06:00", "tz": "Mars/Olympus"}}, "is not a time zone"),
    ({"quiet_hours": {"start": "22:00", "end": "06:00", "severities": ["loud"]}}, "are not info, warning"),
    ({"group_wait": "soon"}, "is not a duration"),
])
def test_bad_quiet_hours_or_group_wait_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_notify_config(doc | {"routes": []})
