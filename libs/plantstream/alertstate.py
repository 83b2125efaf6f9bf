"""Which alert commands are allowed in which state: one table shared by the CLI (which checks
before sending) and the maintenance service (which checks again when applying), so both give
the same answer and the same message."""

from __future__ import annotations

from typing import Any

from plantstream.errors import PlantstreamError

ACTIONS = ("acknowledge", "resolve", "silence")
ALLOWED: dict[str, set[str]] = {
    "acknowledge": {"open"},
    "resolve": {"open", "acknowledged"},
    "silence": {"open", "acknowledged"},
}


class InvalidCommand(PlantstreamError):
    """An alert command that cannot be applied; ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_command(alert: dict[str, Any] | None, alert_id: str, action: str,
                  until: int | None = None, now: int | None = None) -> None:
    """Raise :class:`InvalidCommand` unless ``action`` may be applied to ``alert`` (its latest
    revision, or None when no such alert exists).

    >>> check_command({"state": "open"}, "a#1", "acknowledge")
    >>> check_command({"state": "resolved", "actor": "ana"}, "a#1", "acknowledge")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantstream.alertstate.InvalidCommand: alert a#1 is resolved (by ana); only open alerts can be ...
    """
    if action not in ALLOWED:
        raise InvalidCommand("unknown_action", f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if alert is None:
        raise InvalidCommand("unknown_alert",
                             f"no alert {alert_id}; `plantstream alerts list` shows the known ids")
    state = alert["state"]
    if state not in ALLOWED[action]:
        who = f" (by {alert['actor']})" if alert.get("actor") else ""
        allowed = " or ".join(sorted(ALLOWED[action]))
        verb = {"acknowledge": "acknowledged", "resolve": "resolved", "silence": "silenced"}[action]
        raise InvalidCommand(f"{state}_cannot_{action}",
                             f"alert {alert_id} is {state}{who}; only {allowed} alerts can be {verb}")
    if action == "silence" and (until is None or (now is not None and until <= now)):
        raise InvalidCommand("silence_until_past",
                             f"silence for alert {alert_id} needs an 'until' in the future")
