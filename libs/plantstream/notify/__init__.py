"""Notification delivery for alerts: routing from a YAML file, webhook (HMAC-signed JSON) and
e-mail (SMTP), retries with exponential backoff, and one ``notification_attempt`` record per
try. Blocking I/O runs in an executor so a slow receiver never stalls a stream. When to
notify (grouping, escalation, reminders, quiet hours) is the notifier service's business."""

from plantstream.notify.config import (
    Escalation,
    NotifyConfig,
    QuietHours,
    Route,
    Target,
    load_notify_config,
    parse_duration,
)
from plantstream.notify.delivery import Item, Notifier
from plantstream.notify.signing import sign_headers, verify

__all__ = ["Escalation", "Item", "Notifier", "NotifyConfig", "QuietHours", "Route", "Target",
           "load_notify_config", "parse_duration", "sign_headers", "verify"]
