"""The notifier end to end against the real broker: alert revisions produced the way
maintenance writes them (inside Kafka transactions, with the ``plantstream-notify`` header),
``python -m notifier`` as a real process, a real webhook receiver and SMTP server, and the
``notifications`` topic read back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from notifier_support import revision, start_notifier
from receivers import MailSink, WebhookReceiver, start_smtp, wait_for
from tx_input import produce_transactions

from plantstream.avro import AvroCodec
from plantstream.kafka import Output
from plantstream.notify import verify
from plantstream.settings import Settings
from plantstream.topics import ALERTS, NOTIFICATIONS, machine_key

from kafka_io import read_topic

CODEC = AvroCodec()
SECRET = "test-secret-" + uuid.uuid4().hex[:6]
REMIND_S, ESCALATE_S = 2.0, 3.0
CONFIG = """
group_wait: 0.5s
webhook_allow: [127.0.0.0/8]  # the test receivers listen on loopback
retry: {{attempts: 3, backoff: 0.2s, max_backoff: 1s, timeout: 2s}}
smtp: {{host: 127.0.0.1, port: {smtp}, sender: plantstream@plant.test}}
escalation:
  critical: {{after: {after}s, max_level: 1, remind_every: {remind}s}}
routes:
  - name: shift
    tenant: demo
    levels: [0]
    webhook: {{url: "{hook}/shift", secret_env: TEST_WEBHOOK_SECRET}}
    email: [shift@plant.test]
  - name: manager
    tenant: demo
    severities: [critical]
    levels: [1]
    webhook: {{url: "{hook}/manager", secret_env: TEST_WEBHOOK_SECRET}}
"""


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, Any, MailSink]]:
    hooks = WebhookReceiver()
    smtp, mail = start_smtp()
    try:
        yield hooks, smtp, mail
    finally:
        hooks.stop()
        smtp.stop()


def produce_revision(s: Settings, alert: dict[str, Any], reason: str | None) -> None:
    """One alert revision in its own Kafka transaction, as maintenance writes them."""
    headers = [("plantstream-notify", reason.encode())] if reason else []
    out = Output(ALERTS.physical(s), machine_key(alert["tenant"], alert["site"], alert["machine"]),
                 CODEC.encode("alert_event", alert), headers)
    produce_transactions(s, [out], 1)


def demo_alert(rev: int, **extra: Any) -> dict[str, Any]:
    return revision(rev, time.time(), **extra) | {"tenant": "demo", "site": "plant-1", "machine": "press-07",
                                                   "alert_id": "demo/plant-1/press-07/limit/temp#1"}


def test_notifies_escalates_and_reminds_until_acknowledged(
        settings: Settings, service_env: dict[str, str], tmp_path: Path,
        receivers: tuple[WebhookReceiver, Any, MailSink]) -> None:
    hooks, smtp, mail = receivers
    config = tmp_path / "notify.yaml"
    config.write_text(CONFIG.format(smtp=smtp.port, hook=hooks.url(""), after=ESCALATE_S, remind=REMIND_S))
    env = service_env | {"PLANTSTREAM_NOTIFY_CONFIG": str(config), "TEST_WEBHOOK_SECRET": SECRET,
                         "PLANTSTREAM_NOTIFY_TICK_SECONDS": "0.25"}
    aid = "demo/plant-1/press-07/limit/temp#1"
    produce_revision(settings, demo_alert(1), "raised")
    produce_revision(settings, demo_alert(2, occurrences=5), None)  # a plain update: no notification
    service = start_notifier(env, tmp_path / "notifier.log")
    try:
        raised = wait_for(lambda: next((h for h in hooks.received if h.json["reason"] == "raised"), None), 60,
                          "the raised webhook", alive=service.assert_running)
        assert raised.path == "/shift"
        assert verify(raised.body, SECRET, raised.headers)
        assert not verify(raised.body + b" ", SECRET, raised.headers)
        assert raised.headers["Idempotency-Key"] == f"{aid}@1"
        assert raised.json["alert"]["occurrences"] == 5  # the newest revision's content
        sender, rcpts, raw = wait_for(lambda: mail.messages[:1], 20, "the e-mail")[0]
        msg = message_from_bytes(raw, policy=policy.default)
        assert (sender, rcpts) == ("plantstream@plant.test", ["shift@plant.test"])
        assert "[plantstream CRITICAL] demo/plant-1/press-07" in msg["Subject"]

        def reminders() -> list[Any]:
            return [h for h in hooks.received if h.json["reason"] == "reminder"]

        wait_for(lambda: len(reminders()) >= 3, 30, "three reminders", alive=service.assert_running)
        escalated = next(h for h in hooks.received if h.json["reason"] == "escalated")
        assert escalated.path == "/manager" and escalated.json["alert"]["escalation_level"] == 1
        assert escalated.headers["Idempotency-Key"] == f"{aid}@1/L1"
        keys = [h.headers["Idempotency-Key"] for h in reminders()]
        assert keys[:3] == [f"{aid}@1/L0/R1", f"{aid}@1/L1/R2", f"{aid}@1/L1/R3"]
        gaps = [b.at - a.at for a, b in zip(reminders(), reminders()[1:], strict=False)]
        assert all(REMIND_S - 0.5 <= g <= REMIND_S + 2.5 for g in gaps[1:]), gaps

        produce_revision(settings, demo_alert(3, state="acknowledged", actor="ana"), None)
        acked_at = time.monotonic()
        time.sleep(3 * REMIND_S)
        service.assert_running()
        late = [h for h in reminders() if h.at > acked_at + 1.5]  # one may have been on its way
        assert late == [], [h.headers["Idempotency-Key"] for h in late]
    finally:
        assert service.stop() == 0, service.tail()

    attempts = [CODEC.decode(m.value(), "notification_attempt")
                for m in read_topic(settings, NOTIFICATIONS.physical(settings), idle=2.0)]
    ids = [a["attempt_id"] for a in attempts]
    assert len(ids) == len(set(ids)), "an attempt was recorded twice"
    delivered = {a["attempt_id"] for a in attempts if a["outcome"] == "delivered"}
    for h in hooks.received:  # every POST and every e-mail is on the notifications topic
        assert f"{h.headers['Idempotency-Key']}/webhook/{hooks.url(h.path)}/1" in delivered
    email_ids = [i for i in delivered if "/email/" in i]
    assert len(email_ids) == len(mail.messages) >= 2  # raised and the level-0 reminder
    assert all(a["alert_id"] == aid and a["tenant"] == "demo" for a in attempts)
    assert {a["escalation_level"] for a in attempts} == {0, 1}
