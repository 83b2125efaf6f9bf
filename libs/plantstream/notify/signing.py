"""Webhook signatures per the Standard Webhooks spec (standardwebhooks.com).

Each POST carries ``webhook-id`` (the notification's idempotency key), ``webhook-timestamp``
(Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
The id and the time are signed with the body, so a receiver can prove the notification came
from this platform unaltered, refuse a replay older than its tolerance, and drop a duplicate
by its id. A secret in the spec's ``whsec_<base64>`` form is decoded; any other string is
used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
TOLERANCE_S = 300  # the spec's suggestion: older (or further ahead) signatures are refused


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def signature(msg_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """The ``webhook-signature`` value.

    The spec's own example:

    >>> signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}',
    ...           "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def sign_headers(msg_id: str, body: bytes, secret: str, now: float | None = None) -> dict[str, str]:
    """The three headers a signed POST carries."""
    ts = int(time.time() if now is None else now)
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: signature(msg_id, ts, body, secret)}


def verify(body: bytes, secret: str, headers: Mapping[str, str], *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver checks: one of the listed ``v1`` signatures matches (constant time) and
    the timestamp is within ``tolerance_s`` of ``now``. Header names in any case."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, given = lower.get(ID_HEADER), lower.get(TIMESTAMP_HEADER), lower.get(SIGNATURE_HEADER)
    if not (msg_id and ts and given) or not ts.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(ts)) > tolerance_s:
        return False
    expected = signature(msg_id, int(ts), body, secret)
    return any(hmac.compare_digest(expected, s) for s in given.split(" ") if s.startswith("v1,"))
