"""Webhook signatures per Standard Webhooks, and where webhooks may go: the spec's own test
vector, replays and tampering refused, key rotation, http(s) only, redirects not followed."""

from __future__ import annotations

import pytest
from receivers import WebhookReceiver

from plantstream.errors import ConfigError
from plantstream.notify import verify
from plantstream.notify.channels import DeliveryFailed, post_webhook
from plantstream.notify.config import parse_notify_config
from plantstream.notify.destinations import DestinationPolicy
from plantstream.notify.signing import sign_headers, signature

BODY = b'{"reason": "raised"}'

LOOPBACK = DestinationPolicy.of(["127.0.0.0/8"])  # where the test receiver listens


def test_the_specs_example_signature() -> None:
    got = signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}',
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_receiver_refuses_replays_tampering_and_wrong_keys() -> None:
    headers = sign_headers("alert-1@2", BODY, "s3", now=1_800_000_000)
    assert verify(BODY, "s3", headers, now=1_800_000_010)
    assert verify(BODY, "s3", {k.title(): v for k, v in headers.items()}, now=1_800_000_010)  # any case
    assert not verify(BODY, "s3", headers, now=1_800_000_000 + 301)  # replayed 5 minutes later
    assert not verify(BODY, "s3", headers, now=1_800_000_000 - 301)  # stamped in the future
    assert not verify(BODY + b" ", "s3", headers, now=1_800_000_010)  # body changed
    assert not verify(BODY, "s3", headers | {"webhook-id": "alert-1@3"}, now=1_800_000_010)  # id changed
    assert not verify(BODY, "other", headers, now=1_800_000_010)
    assert not verify(BODY, "s3", {"webhook-id": "x"}, now=1_800_000_010)  # unsigned
    rotated = headers | {"webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify(BODY, "s3", rotated, now=1_800_000_010)  # one of several signatures matches


def test_posts_are_signed_and_redirects_are_not_followed() -> None:
    hooks = WebhookReceiver()
    try:
        sent = post_webhook(hooks.url("/in"), BODY, "s3", "alert-1@2", timeout=5, destinations=LOOPBACK)
        assert sent == "HTTP 200"
        with pytest.raises(DeliveryFailed, match="HTTP 307"):
            post_webhook(hooks.url("/redirect"), BODY, "s3", "alert-1@2", timeout=5,
                         destinations=LOOPBACK)
    finally:
        hooks.stop()
    assert [h.path for h in hooks.received] == ["/in", "/redirect"]  # nothing reached /landed
    assert verify(hooks.received[0].body, "s3", hooks.received[0].headers)
    assert {k.lower() for k in hooks.received[0].headers} >= {"webhook-id", "webhook-timestamp",
                                                              "webhook-signature", "idempotency-key"}


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://hooks.example/x", "gopher://x"])
def test_only_http_and_https_webhooks(url: str) -> None:
    with pytest.raises(DeliveryFailed, match="only http and https"):
        post_webhook(url, BODY, "", "alert-1@2", timeout=1, destinations=LOOPBACK)
    with pytest.raises(ConfigError, match="must be http:// or https://"):
        parse_notify_config({"routes": [{"name": "r", "webhook": {"url": url}}]})
