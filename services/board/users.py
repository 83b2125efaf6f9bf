"""The board's local user file: one entry per person, bound to one tenant.

Until the platform has its own identity provider (the security issue), people log in with a
name and password kept in ``PLANTSTREAM_BOARD_USERS`` (YAML)::

    users:
      ana: {tenant: demo, password: "scrypt$16384$8$1$<salt>$<hash>"}

Passwords are stored as salted scrypt hashes (``hashlib.scrypt``, memory-hard, so a stolen
file is slow to brute-force); verifying compares in constant time. The file is re-read when it
changes, so adding a user needs no restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from plantstream.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class User:
    name: str
    tenant: str
    password_hash: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) for ``password`` with a fresh 16-byte salt."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; a malformed entry never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True),
                             n=int(n), r=int(r), p=int(p), dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def parse_users(text: str, where: str) -> dict[str, User]:
    """Users from the YAML text of a user file; a wrong entry is an error naming it."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    entries = doc.get("users") if isinstance(doc, dict) else None
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{where}: 'users' must map user names to {{tenant, password}}")
    users = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: user name {name!r}: use letters, digits and . _ @ - (at most 64)")
        if not isinstance(entry, dict) or not isinstance(entry.get("tenant"), str) \
                or not isinstance(entry.get("password"), str):
            raise ConfigError(f"{where}: user {name}: needs a tenant and a password hash "
                              "(add users with `plantstream board add-user`)")
        users[name] = User(name, entry["tenant"], entry["password"])
    return users


def add_user(path: Path, name: str, tenant: str, password: str) -> None:
    """Add or replace ``name`` in the user file (created with mode 0600)."""
    if not NAME.match(name):
        raise ConfigError(f"user name {name!r}: use letters, digits and . _ @ - (at most 64)")
    if not tenant:
        raise ConfigError("a user needs a tenant")
    if len(password) < 8:
        raise ConfigError("a password needs at least 8 characters")
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    doc = doc if isinstance(doc, dict) else {}
    users = doc.setdefault("users", {}) or {}
    doc["users"] = users
    users[name] = {"tenant": tenant, "password": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=True)
    tmp.replace(path)


class UserFile:
    """The user file, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return {}
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._users = parse_users(self.path.read_text(), str(self.path))
                self._stamp = stamp
            return self._users

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right; otherwise None (same cost for unknown names)."""
        user = self.users().get(name)
        if user is None:
            verify_password(password, _DUMMY_HASH)  # same work, so timing does not tell names apart
            return None
        return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = hash_password("not a password", salt=b"\0" * 16)
