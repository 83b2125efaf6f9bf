"""Deliver notifications to every routed target, retrying with exponential backoff, and
report every attempt (delivered / failed / dead) through a callback that publishes
``notification_attempt`` records.

A notification is one or more :class:`Item` s (alerts of one machine grouped together);
each target gets one webhook POST or e-mail with every item routed to it, and every item
gets its own attempt record. Attempt ids are ``<item key>/<channel>/<target>/<n>``; the
item key is ``<alert_id>@<revision>`` for a notification caused by an alert revision, and
names the escalation level / reminder number for the notifier's own timers, so every
attempt id is stable (a re-delivery after a crash gets the same id and the archive
de-duplicates) and distinct (reminder 2 is not reminder 1). Webhook receivers get
``Idempotency-Key: <item key>`` (a group: a digest of its keys).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from plantstream.notify.channels import (
    DeliveryFailed,
    DeliveryRefused,
    email_message,
    post_webhook,
    send_email,
    webhook_body,
)
from plantstream.notify.config import NotifyConfig, Target

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Item:
    """One alert to notify about: the alert as delivered (its ``escalation_level`` picks the
    routes), why, and the stable key its attempt ids and Idempotency-Key derive from."""

    alert: dict[str, Any]
    reason: str
    key: str

    @classmethod
    def of(cls, alert: dict[str, Any], reason: str) -> Item:
        return cls(alert, reason, f"{alert['alert_id']}@{alert['revision']}")


def idempotency_key(items: list[Item]) -> str:
    if len(items) == 1:
        return items[0].key
    digest = hashlib.sha256("\n".join(sorted(i.key for i in items)).encode()).hexdigest()[:24]
    return f"group:{digest}"


class Notifier:
    def __init__(self, config: NotifyConfig, publish: Publish,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.publish = publish
        self.sleep = sleep

    async def notify(self, alert: dict[str, Any], reason: str) -> list[dict[str, Any]]:
        """Deliver one alert revision; return the final attempt record per target."""
        return await self.deliver([Item.of(alert, reason)])

    async def deliver(self, items: list[Item]) -> list[dict[str, Any]]:
        """Deliver to all targets concurrently; return the final attempt record per target
        and item."""
        per_target: dict[tuple[str, str], tuple[Target, list[Item]]] = {}
        for item in items:
            level = int(item.alert.get("escalation_level", 0))
            targets = self.config.targets(item.alert, level)
            if not targets:
                log.info("no route for alert", extra={"alert_id": item.alert["alert_id"], "level": level})
            for t in targets:
                per_target.setdefault((t.channel, t.target), (t, []))[1].append(item)
        done = await asyncio.gather(*(self._deliver(group, t) for t, group in per_target.values()))
        return [rec for recs in done for rec in recs]

    async def _deliver(self, items: list[Item], target: Target) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        cfg = self.config
        records: list[dict[str, Any]] = []
        for n in range(1, cfg.attempts + 1):
            try:
                detail = await loop.run_in_executor(None, self._send_blocking, items, target)
                outcome = "delivered"
            except DeliveryRefused as exc:  # refused by policy: trying again cannot help
                detail, outcome = str(exc), "dead"
            except DeliveryFailed as exc:
                detail = str(exc)
                outcome = "dead" if n == cfg.attempts else "failed"
            except Exception as exc:  # a bug in a channel must not kill the notifier loop
                log.exception("delivery crashed", extra={"target": target.target})
                detail = f"internal error: {exc!r}"
                outcome = "dead" if n == cfg.attempts else "failed"
            records = [self._attempt(item, target, n, outcome, detail) for item in items]
            for rec in records:
                await self.publish(rec)
            if outcome != "failed":
                return records
            await self.sleep(min(cfg.backoff_s * 2 ** (n - 1), cfg.max_backoff_s))
        return records

    def _send_blocking(self, items: list[Item], target: Target) -> str:
        first = items[0]
        group = [(i.alert, i.reason) for i in items]
        if target.channel == "webhook":
            return post_webhook(target.target, webhook_body(first.alert, first.reason, group), target.secret,
                                idempotency_key(items), self.config.timeout_s,
                                destinations=self.config.destinations)
        msg = email_message(first.alert, first.reason, self.config.smtp.sender, target.target, group)
        return send_email(self.config.smtp, msg, self.config.timeout_s)

    @staticmethod
    def _attempt(item: Item, target: Target, n: int, outcome: str, detail: str) -> dict[str, Any]:
        alert = item.alert
        return {
            "attempt_id": f"{item.key}/{target.channel}/{target.target}/{n}",
            "alert_id": alert["alert_id"], "revision": alert["revision"], "tenant": alert["tenant"],
            "site": alert["site"], "machine": alert["machine"], "channel": target.channel,
            "target": target.target, "attempt": n, "outcome": outcome, "detail": detail[:1000],
            "escalation_level": int(alert.get("escalation_level", 0)), "attempted_at": int(time.time() * 1e6),
        }
