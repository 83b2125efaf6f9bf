"""When the notifier speaks: escalation, reminders, raise-after, quiet hours and grouping.
Kafka-free and clock-free (``now`` in wall-clock microseconds is passed in), so every rule
is unit-tested directly.

- Escalation: an open, unacknowledged, unsilenced alert whose severity has a policy moves up
  one level every ``after`` seconds (counted from when people were told at the current level,
  or from the end of a silence) until ``max_level``; and is re-sent every ``remind_every``
  seconds until someone acknowledges it. A warning left unacknowledged for ``raise_after`` is
  notified as critical from then on (the alert itself stays maintenance's: its severity on the
  alerts topic does not change).
- One notification at a time per alert: while one is pending the timers wait, so a held
  (quiet hours) alert does not pile up reminders and escalations counts from when people
  were actually told.
- Quiet hours hold notifications of the configured severities; when they end, everything
  held goes out (grouped per machine).
- Grouping: pending notifications of one machine and level go out together once the oldest
  of them has waited ``group_wait``; each target gets them as one webhook POST / e-mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from notifier.tracking import Tracked
from plantstream.notify import Item, NotifyConfig

S = 1_000_000  # microseconds per second


def decide(entry: Tracked, now: int, cfg: NotifyConfig) -> Tracked:
    """``entry`` with a timer-driven notification pending if one is due at ``now``."""
    a = entry.alert
    if entry.pending_key is not None or a["state"] != "open" or entry.silenced(now):
        return entry
    esc = cfg.escalation.get(entry.severity)
    if esc is None:
        return entry
    base = f"{entry.alert_id}@{entry.cycle_revision}"
    since = max(entry.level_since, a.get("silenced_until") or 0)
    if (esc.raise_after_s and entry.severity == "warning"
            and now - entry.opened_at >= esc.raise_after_s * S):
        raised = replace(entry, raised_to_critical=True)
        return raised.with_pending("severity_raised", f"{base}/critical", now)
    if esc.after_s and entry.level < esc.max_level and now - since >= esc.after_s * S:
        level = entry.level + 1
        return replace(entry, level=level).with_pending("escalated", f"{base}/L{level}", now)
    if esc.remind_every_s and now - max(entry.last_notified_at, since) >= esc.remind_every_s * S:
        n = entry.reminders + 1
        return replace(entry, reminders=n).with_pending("reminder", f"{base}/L{entry.level}/R{n}", now)
    return entry


def held(entry: Tracked, now: int, cfg: NotifyConfig) -> bool:
    """True while quiet hours hold this alert's notifications."""
    return cfg.quiet_hours is not None and cfg.quiet_hours.holds(entry.severity, now)


def due_groups(entries: Iterable[tuple[bytes, Tracked]], now: int, cfg: NotifyConfig,
               in_flight: set[str] = frozenset()) -> list[list[tuple[bytes, Tracked]]]:
    """The pending notifications to send now, grouped per (tenant, site, machine, level);
    ``in_flight`` holds pending keys already being delivered."""
    groups: dict[tuple[str, str, str, int], list[tuple[bytes, Tracked]]] = {}
    for key, e in entries:
        if e.pending_key is None or e.pending_key in in_flight or held(e, now, cfg):
            continue
        a = e.alert
        groups.setdefault((a["tenant"], a["site"], a["machine"], e.level), []).append((key, e))
    due = []
    for members in groups.values():
        oldest = min(e.pending_since or 0 for _, e in members)
        if now - oldest >= cfg.group_wait_s * S:
            due.append(sorted(members, key=lambda m: m[1].alert_id))
    return due


def item(entry: Tracked) -> Item:
    """What to deliver for ``entry``'s pending notification."""
    assert entry.pending_key is not None and entry.pending_reason is not None
    return Item(entry.delivered_alert(), entry.pending_reason, entry.pending_key)
