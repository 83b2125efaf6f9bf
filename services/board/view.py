"""What the board shows, as pure functions of alert records: the current alert list (archive
merged with what the live feed has seen since), filters, ordering and summaries.

Alert records have the shape of the Avro ``alert_event`` (timestamps in µs since the epoch,
``evidence`` a dict), whether they came from ClickHouse or from the topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantstream.alertstate import ALLOWED
from plantstream.units import duration

SEVERITIES = ("critical", "warning", "info")
STATE_FILTERS = ("unresolved", "open", "acknowledged", "resolved", "all")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
Alert = dict[str, Any]


@dataclass(frozen=True)
class Filters:
    """The list page's filters, from its query string; unknown values fall back to the default."""

    site: str = ""
    machine: str = ""
    severity: str = ""
    state: str = "unresolved"

    @classmethod
    def from_query(cls, query: Mapping[str, list[str]]) -> Filters:
        def one(name: str) -> str:
            values = query.get(name) or [""]
            return values[0].strip()[:200]

        severity = one("severity")
        state = one("state") or "unresolved"
        return cls(site=one("site"), machine=one("machine"),
                   severity=severity if severity in SEVERITIES else "",
                   state=state if state in STATE_FILTERS else "unresolved")

    def matches(self, a: Alert) -> bool:
        if self.site and a["site"] != self.site:
            return False
        if self.machine and a["machine"] != self.machine:
            return False
        if self.severity and a["severity"] != self.severity:
            return False
        if self.state == "unresolved":
            return a["state"] != "resolved"
        return self.state == "all" or a["state"] == self.state


def merge_latest(archived: Iterable[Alert], live: Iterable[Alert], tenant: str) -> dict[str, Alert]:
    """Latest revision per alert of ``tenant``: the archive lags the topic by archival's batch
    wait, so a revision the live feed already saw wins over an older archived one."""
    out: dict[str, Alert] = {}
    for a in (*archived, *live):
        if a["tenant"] != tenant:
            continue
        have = out.get(a["alert_id"])
        if have is None or a["revision"] > have["revision"]:
            out[a["alert_id"]] = a
    return out


def ordered(alerts: Iterable[Alert]) -> list[Alert]:
    """Most severe first, then by site and machine, then the most recently changed."""
    return sorted(alerts, key=lambda a: (SEVERITY_RANK.get(a["severity"], 9), a["site"], a["machine"],
                                         -a["updated_at"]))


def severity_counts(alerts: Iterable[Alert]) -> dict[str, int]:
    c = Counter(a["severity"] for a in alerts)
    return {s: c.get(s, 0) for s in SEVERITIES}


def allowed_states(action: str) -> list[str]:
    """States in which ``action`` may be sent (the shared rule table), for the forms."""
    return sorted(ALLOWED[action])


def shelved(a: Alert, now_us: int) -> bool:
    return bool(a.get("silenced_until")) and a["silenced_until"] > now_us


def actor_name(user: str, given: str) -> str:
    """Who the command is from: the logged-in user, plus the person's name when a shared
    login (a shift account) is used by someone else."""
    given = " ".join(given.split())[:64]
    return user if not given or given == user else f"{given} ({user})"


def fmt_time(us: int | None) -> str:
    if not us:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_ago(us: int | None, now_us: int) -> str:
    """'42 s ago', '5 min ago', '3.2 h ago', '2.0 days ago' (or 'never'): the alerts' own units."""
    if not us:
        return "never"
    return f"{duration((now_us - us) / 1e6)} ago"


def fmt_number(v: float) -> str:
    return f"{v:.4g}"


def trend_window(first_seen: int, last_seen: int, now_us: int) -> tuple[int, int, int]:
    """(start, end, step) in µs for the sensor trend around an alert: from before the episode
    (at least 30 min, or half its length) to 10 min after its last sighting (not past now),
    at most 7 days, in about 300 buckets of whole seconds."""
    span = max(0, last_seen - first_seen)
    start = first_seen - max(1_800_000_000, span // 2)
    end = min(max(last_seen + 600_000_000, first_seen), max(now_us, last_seen))
    start = max(start, end - 7 * 86_400_000_000)
    step = max(1_000_000, ((end - start) // 300) // 1_000_000 * 1_000_000)
    return start, end, step


def live_payload(a: Alert) -> dict[str, Any]:
    """The fields of a revision the pages update live (sent as JSON over server-sent events)."""
    return {k: a.get(k) for k in ("alert_id", "revision", "site", "machine", "severity", "state", "title",
                                  "actor", "note", "occurrences", "updated_at", "silenced_until")} | {
        "updated": fmt_time(a.get("updated_at")), "shelved_until": fmt_time(a.get("silenced_until"))}
