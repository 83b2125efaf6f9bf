"""Notification routing and delivery against real local receivers (HTTP and SMTP); the
attempt records are collected from the publish callback instead of Kafka."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from typing import Any

import pytest
from maintenance_support import WebhookReceiver, free_port, start_smtp

from plantstream.errors import ConfigError
from plantstream.notify import Notifier, verify
from plantstream.notify.config import parse_notify_config

ALERT = {"alert_id": "acme/p1/pump-01/limit/temp#1", "revision": 2, "tenant": "acme", "site": "p1",
         "machine": "pump-01", "sensors": ["temp"], "rule": "limit", "severity": "critical", "state": "open",
         "title": "temp 99 degC above critical limit 95", "first_seen": 1, "last_seen": 2, "occurrences": 3,
         "escalation_level": 0, "evidence": {"value": 99.0, "limit": 95.0}, "recommended_action": "Cool it.",
         "actor": None, "note": None, "silenced_until": None, "updated_at": 3}

# the test receivers listen on loopback, which webhooks may only reach when allowed
LOCAL_RECEIVERS = {"webhook_allow": ["127.0.0.0/8"]}


def deliver(config: dict[str, Any], alert: dict[str, Any] = ALERT) -> list[dict[str, Any]]:
    published: list[dict[str, Any]] = []

    async def publish(rec: dict[str, Any]) -> None:
        published.append(rec)

    asyncio.run(Notifier(parse_notify_config(LOCAL_RECEIVERS | config), publish).notify(alert, "raised"))
    return published


def test_routing_by_tenant_site_severity_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "x")
    cfg = parse_notify_config({"routes": [
        {"name": "all-acme", "tenant": "acme", "email": ["a@x.test"]},
        {"name": "crit-p1", "tenant": "acme", "site": "p1", "severities": ["critical"], "levels": [0],
         "webhook": {"url": "http://h/1", "secret_env": "HOOK_SECRET"}, "email": "a@x.test"},
        {"name": "boss", "levels": [1], "email": ["boss@x.test"]}]})
    assert [(t.channel, t.target) for t in cfg.targets(ALERT, 0)] == [
        ("email", "a@x.test"), ("webhook", "http://h/1")]
    assert [t.target for t in cfg.targets(ALERT | {"severity": "warning"}, 0)] == ["a@x.test"]
    assert [t.target for t in cfg.targets(ALERT | {"tenant": "beta"}, 1)] == ["boss@x.test"]
    assert cfg.targets(ALERT | {"tenant": "beta"}, 0) == []
    assert cfg.targets(ALERT, 0)[1].secret == "x"


@pytest.mark.parametrize("doc, message", [
    ({"routes": [{"name": "r"}]}, "give a 'webhook' and/or an 'email'"),
    ({"routes": [{"email": ["not-an-address"]}]}, "is not an e-mail address"),
    ({"routes": [{"webhook": {"url": "http://h", "secret_env": "PLANTSTREAM_TEST_UNSET"}}]},
     "PLANTSTREAM_TEST_UNSET .* is not set"),
    ({"retry": {"backoff": "soon"}, "routes": []}, "is not a duration"),
    ({"escalation": {"urgent": {"after": "1m"}}, "routes": []}, "must be info, warning or critical"),
])
def test_bad_config_is_refused_with_a_clear_message(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_notify_config(doc)


def test_webhook_delivery_is_signed_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_TEST_HOOK_SECRET", "s3")
    hooks = WebhookReceiver()
    try:
        attempts = deliver({"routes": [{"webhook": {"url": hooks.url("/in"),
                                                    "secret_env": "PLANTSTREAM_TEST_HOOK_SECRET"}}]})
    finally:
        hooks.stop()
    assert [(a["attempt"], a["outcome"], a["detail"]) for a in attempts] == [(1, "delivered", "HTTP 200")]
    assert attempts[0]["attempt_id"] == f"{ALERT['alert_id']}@2/webhook/{hooks.url('/in')}/1"
    (hook,) = hooks.received
    assert verify(hook.body, "s3", hook.headers)
    assert not verify(hook.body, "wrong", hook.headers)
    assert hook.json == {"reason": "raised", "alert": ALERT}
    assert hook.headers["Idempotency-Key"] == f"{ALERT['alert_id']}@2"


def test_unreachable_webhook_is_retried_with_backoff_then_dead() -> None:
    attempts = deliver({"retry": {"attempts": 4, "backoff": 0.05, "max_backoff": 0.1},
                        "routes": [{"webhook": {"url": f"http://127.0.0.1:{free_port()}/x"}}]})
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "failed"),
                                                                (4, "dead")]
    gaps = [(b["attempted_at"] - a["attempted_at"]) / 1e6
            for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.1  # doubled, then capped


def test_email_reaches_a_real_smtp_server() -> None:
    controller, mail = start_smtp()
    try:
        attempts = deliver({"smtp": {"host": "127.0.0.1", "port": controller.port, "sender": "ps@x.test"},
                            "routes": [{"email": ["shift@x.test"]}]})
    finally:
        controller.stop()
    assert [(a["channel"], a["outcome"]) for a in attempts] == [("email", "delivered")]
    ((sender, rcpts, raw),) = mail.messages
    msg = message_from_bytes(raw, policy=policy.default)
    assert (sender, rcpts) == ("ps@x.test", ["shift@x.test"])
    subject = msg["Subject"].strip()  # long subjects are folded after "Subject:"
    assert subject == "[plantstream CRITICAL] acme/p1/pump-01: temp 99 degC above critical limit 95"
    assert "What to do: Cool it." in msg.get_content()


def test_smtp_server_down_ends_in_a_dead_attempt() -> None:
    attempts = deliver({"retry": {"attempts": 2, "backoff": 0.01},
                        "smtp": {"host": "127.0.0.1", "port": free_port()},
                        "routes": [{"email": ["a@x.test"]}]})
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed"), (2, "dead")]
    assert "ConnectionRefusedError" in attempts[-1]["detail"]
