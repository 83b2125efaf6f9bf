"""Login sessions and CSRF tokens, held in the board's memory.

A session is a random 256-bit token in an ``HttpOnly; SameSite=Strict`` cookie, so scripts
cannot read it and other sites' pages cannot send it. Every form also carries the session's
own CSRF token (checked in constant time) as a second, independent line of defence. The login
form, before any session exists, uses a double-submit token: a random cookie whose value the
form must repeat. Restarting the board logs everyone out, which is acceptable for a board.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

SESSION_COOKIE = "board_session"
LOGIN_COOKIE = "board_login"
SESSION_SECONDS = 12 * 3600  # one shift and a bit


@dataclass
class Session:
    user: str
    tenant: str
    csrf: str
    expires: float
    token: str = field(repr=False, default="")


def tokens_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def cookie(name: str, value: str, max_age: int, secure: bool = False) -> str:
    """A ``Set-Cookie`` value the browser keeps from scripts and from other sites' requests."""
    attrs = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict", f"Max-Age={max_age}"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)


def parse_cookies(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out.setdefault(name, value)
    return out


class LoginThrottle:
    """At most ``limit`` failed logins per user name within ``window`` seconds; then that name
    is refused until the window has passed (slows password guessing without locking anyone
    out for long)."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def blocked(self, name: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if t > now - self.window]
            self._failures[name] = recent
            return len(recent) >= self.limit

    def failed(self, name: str, now: float | None = None) -> None:
        with self._lock:
            self._failures.setdefault(name, []).append(time.time() if now is None else now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


class Sessions:
    """Token -> session, expiring after ``SESSION_SECONDS``."""

    def __init__(self, lifetime: float = SESSION_SECONDS) -> None:
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self, user: str, tenant: str, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        s = Session(user, tenant, secrets.token_urlsafe(32), now + self.lifetime, secrets.token_urlsafe(32))
        with self._lock:
            self._by_token = {t: v for t, v in self._by_token.items() if v.expires > now}
            self._by_token[s.token] = s
        return s

    def get(self, token: str | None, now: float | None = None) -> Session | None:
        if not token:
            return None
        now = time.time() if now is None else now
        with self._lock:
            s = self._by_token.get(token)
            if s is not None and s.expires <= now:
                del self._by_token[token]
                return None
            return s

    def end(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)
