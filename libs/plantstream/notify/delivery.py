"""Deliver one alert revision to every routed target, retrying with exponential backoff, and
report every attempt (delivered / failed / dead) through a callback that publishes
``notification_attempt`` records.

Attempt ids are ``<alert_id>@<revision>/<channel>/<target>/<n>``: stable, so when the
service re-delivers after a crash the same attempt gets the same id and consumers (the
archive) de-duplicate; webhook receivers get ``Idempotency-Key: <alert_id>@<revision>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from plantstream.notify.channels import DeliveryFailed, email_message, post_webhook, send_email, webhook_body
from plantstream.notify.config import NotifyConfig, Target

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[None]]


class Notifier:
    def __init__(self, config: NotifyConfig, publish: Publish,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.publish = publish
        self.sleep = sleep

    async def notify(self, alert: dict[str, Any], reason: str) -> list[dict[str, Any]]:
        """Deliver to all targets concurrently; return the final attempt record per target."""
        level = int(alert.get("escalation_level", 0))
        targets = self.config.targets(alert, level)
        if not targets:
            log.info("no route for alert", extra={"alert_id": alert["alert_id"], "level": level})
            return []
        return list(await asyncio.gather(*(self._deliver(alert, reason, t) for t in targets)))

    async def _deliver(self, alert: dict[str, Any], reason: str, target: Target) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        cfg = self.config
        record: dict[str, Any] = {}
        for n in range(1, cfg.attempts + 1):
            try:
                detail = await loop.run_in_executor(None, self._send_blocking, alert, reason, target)
                outcome = "delivered"
            except DeliveryFailed as exc:
                detail = str(exc)
                outcome = "dead" if n == cfg.attempts else "failed"
            except Exception as exc:  # a bug in a channel must not kill the notifier loop
                log.exception("delivery crashed", extra={"target": target.target})
                detail = f"internal error: {exc!r}"
                outcome = "dead" if n == cfg.attempts else "failed"
            record = self._attempt(alert, target, n, outcome, detail)
            await self.publish(record)
            if outcome != "failed":
                return record
            await self.sleep(min(cfg.backoff_s * 2 ** (n - 1), cfg.max_backoff_s))
        return record

    def _send_blocking(self, alert: dict[str, Any], reason: str, target: Target) -> str:
        if target.channel == "webhook":
            return post_webhook(target.target, webhook_body(alert, reason), target.secret,
                                f"{alert['alert_id']}@{alert['revision']}", self.config.timeout_s)
        msg = email_message(alert, reason, self.config.smtp.sender, target.target)
        return send_email(self.config.smtp, msg, self.config.timeout_s)

    @staticmethod
    def _attempt(alert: dict[str, Any], target: Target, n: int, outcome: str, detail: str) -> dict[str, Any]:
        return {
            "attempt_id": f"{alert['alert_id']}@{alert['revision']}/{target.channel}/{target.target}/{n}",
            "alert_id": alert["alert_id"], "revision": alert["revision"], "tenant": alert["tenant"],
            "site": alert["site"], "machine": alert["machine"], "channel": target.channel,
            "target": target.target, "attempt": n, "outcome": outcome, "detail": detail[:1000],
            "escalation_level": int(alert.get("escalation_level", 0)), "attempted_at": int(time.time() * 1e6),
        }
