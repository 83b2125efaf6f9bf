"""HMAC-SHA256 signatures over the exact webhook body, GitHub style (``sha256=<hex>``), so a
receiver can prove a notification came from this platform and was not altered."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Plantstream-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature header value for ``body``.

    >>> sign(b'{"a": 1}', "s3cret")
    'sha256=1a9fab6cd4b8cdcaad8640f3eca73fa924c62ff24f3833254ef3547232153767'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """True if ``header`` is the signature of ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)
