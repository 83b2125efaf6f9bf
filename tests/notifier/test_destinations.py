"""Webhooks cannot be pointed at the platform's own network (server-side request forgery): a
route whose URL names a loopback, private, link-local (cloud metadata), carrier-grade NAT,
multicast or reserved address is a configuration error at start-up; a host name that
resolves to one is refused before the POST, recorded once as ``dead`` with the reason and
not retried; networks in ``webhook_allow`` are reachable. Nothing reaches a refused receiver."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from receivers import WebhookReceiver

from plantstream.errors import ConfigError
from plantstream.notify import Item, Notifier
from plantstream.notify.channels import DeliveryRefused, post_webhook
from plantstream.notify.config import parse_notify_config
from plantstream.notify.destinations import DestinationPolicy

ALERT = {"alert_id": "acme/p1/m1/limit/temp#1", "revision": 1, "tenant": "acme", "site": "p1",
         "machine": "m1", "severity": "critical", "escalation_level": 0, "title": "t", "sensors": ["temp"],
         "rule": "limit", "state": "open", "occurrences": 1, "evidence": {}, "recommended_action": None}


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.9", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fd00::5", "private"), ("100.64.1.1", "carrier-grade NAT"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("240.0.0.1", "reserved"), ("::ffff:127.0.0.1", "loopback"),
])
def test_internal_addresses_are_refused_with_what_they_are(address: str, kind: str) -> None:
    why = DestinationPolicy().refusal(address)
    assert why is not None and kind in why and address in why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert DestinationPolicy().refusal(address) is None


def test_allowed_networks_are_reachable_and_only_those() -> None:
    policy = DestinationPolicy.of(["10.20.0.0/16", "fd12::/16"])
    assert policy.refusal("10.20.9.9") is None and policy.refusal("fd12::7") is None
    assert policy.refusal("10.21.0.1") is not None and policy.refusal("127.0.0.1") is not None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x", "http://10.0.0.5/alerts"])
def test_a_route_to_an_internal_ip_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigError, match="refused: .*add its network to webhook_allow"):
        parse_notify_config({"routes": [{"name": "r", "webhook": {"url": url}}]})


def test_webhook_allow_must_be_networks() -> None:
    with pytest.raises(ConfigError, match="is not a network"):
        parse_notify_config({"webhook_allow": ["the office"], "routes": []})
    with pytest.raises(ConfigError, match="expected a list"):
        parse_notify_config({"webhook_allow": "10.0.0.0/8", "routes": []})


def test_a_host_name_that_resolves_inside_is_refused_before_anything_is_sent() -> None:
    hooks = WebhookReceiver()
    try:
        url = hooks.url("/in").replace("127.0.0.1", "localhost")  # a name: passes the start-up check
        cfg = parse_notify_config({"routes": [{"name": "r", "webhook": {"url": url}}]})
        with pytest.raises(DeliveryRefused, match="'localhost' refused: .* loopback"):
            post_webhook(url, b"{}", "", "k", timeout=2, destinations=cfg.destinations)
        records: list[dict[str, Any]] = []

        async def publish(rec: dict[str, Any]) -> None:
            records.append(rec)

        asyncio.run(Notifier(cfg, publish).deliver([Item(ALERT, "raised", "acme/p1/m1/limit/temp#1@1")]))
    finally:
        hooks.stop()
    assert hooks.received == []  # nothing reached the receiver
    assert [(r["attempt"], r["outcome"]) for r in records] == [(1, "dead")]  # refused once, not retried
    assert "loopback" in records[0]["detail"] and "webhook_allow" in records[0]["detail"]


def test_an_allowed_internal_receiver_gets_the_post() -> None:
    hooks = WebhookReceiver()
    try:
        url = hooks.url("/in").replace("127.0.0.1", "localhost")
        policy = DestinationPolicy.of(["127.0.0.0/8", "::1/128"])
        assert post_webhook(url, b"{}", "", "k", timeout=5, destinations=policy) == "HTTP 200"
    finally:
        hooks.stop()
    assert [h.path for h in hooks.received] == ["/in"]


def test_a_name_whose_answer_changes_after_the_check_is_still_posted_to_the_checked_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the first answer (checked, allowed) is the receiver; every later answer is
    # an address nothing should reach. The resolver is faked for this one name only; the POST
    # is real, to a real receiver on loopback.
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "192.0.2.1")  # TEST-NET-1: unroutable
        return real(answers[-1], *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    hooks = WebhookReceiver()
    try:
        url = hooks.url("/in").replace("127.0.0.1", "rebind.test")
        policy = DestinationPolicy.of(["127.0.0.0/8"])
        assert post_webhook(url, b"{}", "", "k", timeout=5, destinations=policy) == "HTTP 200"
    finally:
        hooks.stop()
    assert answers == ["127.0.0.1"]  # asked once, by the check; the connection used that answer
    assert [h.path for h in hooks.received] == ["/in"]
    assert hooks.received[0].headers["Host"].startswith("rebind.test:")  # the URL's name is kept
