"""The two delivery channels. Both are blocking (urllib, smtplib) and raise
:class:`DeliveryFailed` with a short detail; :mod:`plantstream.notify.delivery` runs them in
an executor and handles retries."""

from __future__ import annotations

import functools
import http.client
import json
import smtplib
import socket
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any

from plantstream.errors import PlantstreamError
from plantstream.notify.config import Smtp
from plantstream.notify.destinations import DestinationPolicy, Refused
from plantstream.notify.signing import sign_headers


class DeliveryFailed(PlantstreamError):
    """One delivery attempt failed; the message is the detail recorded with the attempt."""


class DeliveryRefused(DeliveryFailed):
    """The destination is refused by policy: recorded as dead at once, not retried."""


def webhook_body(alert: dict[str, Any], reason: str,
                 group: list[tuple[dict[str, Any], str]] | None = None) -> bytes:
    """The JSON document POSTed to webhooks: the alert revision plus why it is sent; a grouped
    notification (several alerts of one machine) also lists every alert under ``group``."""
    doc: dict[str, Any] = {"reason": reason, "alert": alert}
    if group and len(group) > 1:
        doc["group"] = [{"reason": r, "alert": a} for a, r in group]
    return json.dumps(doc, sort_keys=True, default=str).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new target: a receiver cannot send the signed body (or
    the platform's requests) somewhere else, e.g. to an internal address."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address the destination policy checked, whatever the resolver says
    now; the Host header keeps the URL's name."""

    def __init__(self, host: str, *, pinned: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.pinned = pinned

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned, self.port), self.timeout, self.source_address)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As :class:`_PinnedHTTPConnection`; the certificate is still verified for the URL's name
    (SNI and hostname check), so pinning the address weakens nothing."""

    def __init__(self, host: str, *, pinned: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.pinned = pinned

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned, self.port), self.timeout, self.source_address)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(urllib.request.HTTPHandler):
    def __init__(self, pinned: str) -> None:
        super().__init__()
        self.pinned = pinned

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_PinnedHTTPConnection, pinned=self.pinned), req)


class _PinnedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, pinned: str) -> None:
        super().__init__()
        self.pinned = pinned

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_PinnedHTTPSConnection, pinned=self.pinned), req,
                            context=self._context)


def _opener(pinned: str) -> urllib.request.OpenerDirector:
    """No redirects, no proxy from the environment (the policy checks the receiver's own
    address, which a proxy would hide), connections to ``pinned``."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects,
                                       _PinnedHTTP(pinned), _PinnedHTTPS(pinned))


def post_webhook(url: str, body: bytes, secret: str, idempotency_key: str, timeout: float, *,
                 destinations: DestinationPolicy) -> str:
    """POST ``body`` (signed per Standard Webhooks when there is a secret); return the status
    line on 2xx, raise DeliveryFailed otherwise (a 3xx included: redirects are not followed),
    DeliveryRefused when the host resolves to an address ``destinations`` refuses."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryRefused(f"webhook URL scheme of {url!r} refused: only http and https")
    try:
        address = destinations.check_resolved(url)
    except Refused as exc:
        raise DeliveryRefused(str(exc)) from None
    headers = {"Content-Type": "application/json", "User-Agent": "plantstream-notify",
               "Idempotency-Key": idempotency_key}
    if secret:
        headers.update(sign_headers(idempotency_key, body, secret))
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener(address).open(req, timeout=timeout) as resp:  # noqa: S310 (checked http(s) URL)
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"{type(exc).__name__}: {reason}") from None


def email_message(alert: dict[str, Any], reason: str, sender: str, to: str,
                  group: list[tuple[dict[str, Any], str]] | None = None) -> EmailMessage:
    """One e-mail; a grouped notification lists every alert of the group, one after another."""
    items = group if group and len(group) > 1 else [(alert, reason)]
    machine = f"{alert['tenant']}/{alert['site']}/{alert['machine']}"
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    msg = EmailMessage()
    msg["Subject"] = f"[plantstream {alert['severity'].upper()}] {machine}: {alert['title']}{more}"
    msg["From"] = sender
    msg["To"] = to
    msg["X-Plantstream-Alert"] = f"{alert['alert_id']} rev {alert['revision']}"
    msg.set_content("\n\n".join("\n".join(_email_lines(a, r)) for a, r in items))
    return msg


def _email_lines(alert: dict[str, Any], reason: str) -> list[str]:
    machine = f"{alert['tenant']}/{alert['site']}/{alert['machine']}"
    lines = [alert["title"], "", f"Machine:   {machine}", f"Sensors:   {', '.join(alert['sensors'])}",
             f"Rule:      {alert['rule']}", f"Severity:  {alert['severity']}", f"State:     {alert['state']}",
             f"Why now:   {reason} (escalation level {alert['escalation_level']})",
             f"Seen:      {alert['occurrences']} times", ""]
    if alert.get("recommended_action"):
        lines += [f"What to do: {alert['recommended_action']}", ""]
    lines += ["Evidence:"] + [f"  {k} = {v:.4g}" for k, v in sorted(alert["evidence"].items())]
    lines += ["", f"Acknowledge: plantstream alerts ack '{alert['alert_id']}' --by NAME --reason TEXT"]
    return lines


def send_email(smtp: Smtp, msg: EmailMessage, timeout: float) -> str:
    """Send one message over SMTP; return the server's answer, raise DeliveryFailed on error."""
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            refused = client.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryFailed(f"recipients refused: {refused}")
    return "250 accepted"
