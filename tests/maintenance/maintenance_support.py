"""Notification-test helpers for the maintenance tests: the shared receivers and service
process helpers live in ``tests/receivers.py``."""

from __future__ import annotations

from receivers import Hook, MailSink, Service, WebhookReceiver, start_smtp, wait_for

from plantstream.localbroker import free_port

__all__ = ["Hook", "MailSink", "Service", "WebhookReceiver", "free_port", "start_smtp", "wait_for"]
