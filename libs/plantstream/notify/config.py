"""Notification routing and escalation, from the YAML file named by PLANTSTREAM_NOTIFY_CONFIG.

Format (every key optional except ``routes``; durations are seconds or ``30s``/``15m``/``2h``/``1d``)::

    retry:
      attempts: 4            # tries per target; the last failed one is recorded as outcome=dead
      backoff: 1s            # wait before try n+1 is backoff * 2**(n-1), capped at max_backoff
      max_backoff: 60s
      timeout: 5s            # per HTTP request / SMTP session
    smtp:
      host: 127.0.0.1
      port: 25
      sender: plantstream@factory.example
      starttls: false
      username: alerts       # optional; the password comes from the env var named here:
      password_env: PLANTSTREAM_SMTP_PASSWORD
    group_wait: 10s          # alerts of one machine arriving within this go out as one notification
    webhook_allow: [10.20.0.0/16]   # webhooks may go to public addresses and these networks only
                                    # (loopback, private, link-local... refused: see notify.destinations)
    escalation:              # per severity; severities not listed never escalate
      critical: {after: 15m, max_level: 2, remind_every: 30m}
      warning: {after: 4h, max_level: 1, raise_after: 1d}
    quiet_hours:             # notifications of these severities wait until quiet hours end
      start: "22:00"
      end: "06:00"           # end before start: the window spans midnight
      tz: Europe/Berlin
      severities: [info, warning]       # omitted: info and warning (critical always goes out)
    routes:                  # every matching route gets the notification
      - name: acme-shift
        tenant: acme         # omitted: any tenant (same for site)
        site: plant1
        severities: [warning, critical]   # omitted: any severity
        levels: [0]                       # escalation levels this route serves; omitted: all
        webhook: {url: "https://hooks.example/alerts", secret_env: ACME_WEBHOOK_SECRET}
        email: [shift-lead@acme.example]

Escalation (decided by the notifier, which follows every open alert): an open alert nobody
acknowledged moves up one level every ``after`` seconds until ``max_level``, and is re-sent
every ``remind_every`` seconds until someone acknowledges it; a warning left unacknowledged
for ``raise_after`` is notified as critical from then on. Silenced alerts wait until the
silence ends.

Secrets are never in the file: ``secret_env`` / ``password_env`` name environment variables.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from plantstream.errors import ConfigError
from plantstream.notify.destinations import DestinationPolicy

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"``.

    >>> [parse_duration(v) for v in (90, "90s", "1.5m", "2h", "1d")]
    [90.0, 90.0, 90.0, 7200.0, 86400.0]
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a duration; write e.g. 30s, 15m, 2h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class Target:
    """One place to deliver to: channel ``webhook`` (URL + secret) or ``email`` (address)."""

    channel: str
    target: str
    secret: str = ""
    route: str = ""


@dataclass(frozen=True)
class Route:
    name: str
    tenant: str | None = None
    site: str | None = None
    severities: frozenset[str] | None = None
    levels: frozenset[int] | None = None
    targets: tuple[Target, ...] = ()

    def matches(self, alert: dict[str, Any], level: int) -> bool:
        return ((self.tenant is None or self.tenant == alert["tenant"])
                and (self.site is None or self.site == alert["site"])
                and (self.severities is None or alert["severity"] in self.severities)
                and (self.levels is None or level in self.levels))


@dataclass(frozen=True)
class Smtp:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "plantstream@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Escalation:
    """How one severity escalates; times in seconds (0: never)."""

    after_s: float = 0.0
    max_level: int = 1
    remind_every_s: float = 0.0
    raise_after_s: float = 0.0


@dataclass(frozen=True)
class QuietHours:
    """A daily local-time window in which notifications of ``severities`` are held."""

    start: time
    end: time
    tz: ZoneInfo
    severities: frozenset[str] = frozenset({"info", "warning"})

    def holds(self, severity: str, now_us: int) -> bool:
        """True if a notification of ``severity`` must wait at wall-clock ``now_us``."""
        if severity not in self.severities:
            return False
        t = datetime.fromtimestamp(now_us / 1e6, self.tz).time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class NotifyConfig:
    routes: tuple[Route, ...] = ()
    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 5.0
    smtp: Smtp = field(default_factory=Smtp)
    escalation: dict[str, Escalation] = field(default_factory=dict)
    group_wait_s: float = 10.0
    quiet_hours: QuietHours | None = None
    destinations: DestinationPolicy = field(default_factory=DestinationPolicy)

    def targets(self, alert: dict[str, Any], level: int) -> list[Target]:
        """Distinct targets of every route matching the alert at escalation ``level``."""
        seen: dict[tuple[str, str], Target] = {}
        for route in self.routes:
            if route.matches(alert, level):
                for t in route.targets:
                    seen.setdefault((t.channel, t.target), t)
        return list(seen.values())


def _secret(d: dict[str, Any], key: str, where: str) -> str:
    name = d.get(key)
    if not name:
        return ""
    value = os.environ.get(str(name))
    if not value:
        raise ConfigError(f"{where}: environment variable {name} (named by {key}) is not set")
    return value


def _route(i: int, r: Any, destinations: DestinationPolicy) -> Route:
    if not isinstance(r, dict):
        raise ConfigError(f"routes[{i}]: expected a mapping")
    name = str(r.get("name") or f"route{i}")
    targets: list[Target] = []
    hooks = r.get("webhook") or []
    for h in hooks if isinstance(hooks, list) else [hooks]:
        if not isinstance(h, dict) or not h.get("url"):
            raise ConfigError(f"route {name}: webhook needs a 'url'")
        if urllib.parse.urlsplit(str(h["url"])).scheme not in ("http", "https"):
            raise ConfigError(f"route {name}: webhook url {h['url']!r} must be http:// or https://")
        refused = destinations.check_url(str(h["url"]))
        if refused:
            raise ConfigError(f"route {name}: webhook url {h['url']!r} refused: {refused}; add its "
                              "network to webhook_allow if the notifier is meant to reach it")
        targets.append(Target("webhook", str(h["url"]), _secret(h, "secret_env", f"route {name}"), name))
    mails = r.get("email") or []
    for addr in mails if isinstance(mails, list) else [mails]:
        if "@" not in str(addr):
            raise ConfigError(f"route {name}: {addr!r} is not an e-mail address")
        targets.append(Target("email", str(addr), "", name))
    if not targets:
        raise ConfigError(f"route {name}: give a 'webhook' and/or an 'email' list")
    sev = r.get("severities")
    levels = r.get("levels")
    return Route(name, r.get("tenant"), r.get("site"), frozenset(sev) if sev else None,
                 frozenset(int(v) for v in levels) if levels is not None else None, tuple(targets))


def _clock(value: Any, where: str) -> time:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(value))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(f"{where}: {value!r} is not a time of day; write e.g. 22:00")
    return time(int(m.group(1)), int(m.group(2)))


def _quiet_hours(q: Any) -> QuietHours | None:
    if not q:
        return None
    if not isinstance(q, dict) or "start" not in q or "end" not in q:
        raise ConfigError("quiet_hours: expected a mapping with 'start' and 'end' (e.g. 22:00, 06:00)")
    try:
        tz = ZoneInfo(str(q.get("tz", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"quiet_hours.tz: {q.get('tz')!r} is not a time zone (Europe/Berlin)") from None
    sev = q.get("severities", ["info", "warning"])
    bad = set(sev) - {"info", "warning", "critical"}
    if bad:
        raise ConfigError(f"quiet_hours.severities: {sorted(bad)} are not info, warning or critical")
    return QuietHours(_clock(q["start"], "quiet_hours.start"), _clock(q["end"], "quiet_hours.end"), tz,
                      frozenset(sev))


def _escalation(sev: str, e: Any) -> Escalation:
    if sev not in ("info", "warning", "critical") or not isinstance(e, dict):
        raise ConfigError(f"escalation: {sev!r} must be info, warning or critical with a mapping")
    return Escalation(
        after_s=parse_duration(e.get("after", 0), f"escalation.{sev}.after"),
        max_level=int(e.get("max_level", 1)),
        remind_every_s=parse_duration(e.get("remind_every", 0), f"escalation.{sev}.remind_every"),
        raise_after_s=parse_duration(e.get("raise_after", 0), f"escalation.{sev}.raise_after"),
    )


def parse_notify_config(doc: Any) -> NotifyConfig:
    if doc is None:
        return NotifyConfig()
    if not isinstance(doc, dict):
        raise ConfigError("notify config: expected a mapping with 'routes:'")
    retry = doc.get("retry") or {}
    smtp = doc.get("smtp") or {}
    escalation = {sev: _escalation(sev, e) for sev, e in (doc.get("escalation") or {}).items()}
    attempts = int(retry.get("attempts", 4))
    if attempts < 1:
        raise ConfigError("retry.attempts must be at least 1")
    allow = doc.get("webhook_allow") or []
    if not isinstance(allow, list):
        raise ConfigError("webhook_allow: expected a list of networks, e.g. [10.20.0.0/16]")
    destinations = DestinationPolicy.of(allow)
    return NotifyConfig(
        routes=tuple(_route(i, r, destinations) for i, r in enumerate(doc.get("routes") or [])),
        attempts=attempts,
        backoff_s=parse_duration(retry.get("backoff", 1), "retry.backoff"),
        max_backoff_s=parse_duration(retry.get("max_backoff", 60), "retry.max_backoff"),
        timeout_s=parse_duration(retry.get("timeout", 5), "retry.timeout"),
        smtp=Smtp(str(smtp.get("host", "127.0.0.1")), int(smtp.get("port", 25)),
                  str(smtp.get("sender", "plantstream@localhost")), bool(smtp.get("starttls", False)),
                  smtp.get("username"), _secret(smtp, "password_env", "smtp") or None),
        escalation=escalation,
        group_wait_s=parse_duration(doc.get("group_wait", 10), "group_wait"),
        quiet_hours=_quiet_hours(doc.get("quiet_hours")),
        destinations=destinations,
    )


def load_notify_config(path: str | Path | None) -> NotifyConfig:
    """The configuration at ``path``; an empty path means no routes (nothing is sent)."""
    if not path:
        return NotifyConfig()
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read PLANTSTREAM_NOTIFY_CONFIG file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"PLANTSTREAM_NOTIFY_CONFIG file {path} is not valid YAML: {exc}") from None
    return parse_notify_config(doc)
