"""Live updates: the board follows the ``alerts`` topic itself and fans new revisions out to
the open pages (server-sent events).

Why the topic and not a poll of the archive: a revision reaches the page as soon as maintenance
commits it, not after archival's next batch; the cost is one consumer per board process,
whatever the number of open pages, where polling would run a ClickHouse query per page every
few seconds on a 2-core machine. The feed reads ``read_committed`` from the end of each
partition (no consumer group, no commits: the archive is the history, the feed only what is
new) and also keeps the latest revision it has seen per alert, so pages rendered from a
lagging archive already show the new state.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from plantstream.avro import AvroCodec
from plantstream.errors import DecodeError
from plantstream.kafka import admin_client, consumer_config
from plantstream.settings import Settings
from plantstream.topics import ALERTS

log = logging.getLogger("board.live")
SUBSCRIBER_BACKLOG = 500


class Subscription:
    """One open page's queue of new revisions (only its tenant's)."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(SUBSCRIBER_BACKLOG)
        self.overflowed = False

    def offer(self, alert: dict[str, Any]) -> None:
        if alert["tenant"] != self.tenant:
            return
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.overflowed = True  # the page is told to reload rather than silently missing updates


class AlertFeed:
    """A thread consuming ``alerts`` from its end; ``latest()`` and subscriptions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = ALERTS.physical(settings)
        self.codec = AvroCodec()
        self._latest: dict[str, dict[str, Any]] = {}
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="board-alert-feed", daemon=True)
        self.undecodable = 0

    def start(self) -> AlertFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def latest(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._latest.values())

    def subscribe(self, tenant: str) -> Subscription:
        sub = Subscription(tenant)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, alert: dict[str, Any]) -> None:
        """Record a revision and hand it to every page of its tenant."""
        with self._lock:
            have = self._latest.get(alert["alert_id"])
            if have is not None and have["revision"] >= alert["revision"]:
                return
            self._latest[alert["alert_id"]] = alert
            subs = list(self._subs)
        for sub in subs:
            sub.offer(alert)

    def _assign_at_end(self, consumer: Consumer) -> None:
        meta = admin_client(self.settings).list_topics(self.topic, timeout=10).topics[self.topic]
        parts = []
        for p in sorted(meta.partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)
            parts.append(TopicPartition(self.topic, p, high))
        consumer.assign(parts)

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, f"board-feed-{uuid.uuid4().hex}"))
        try:
            while not self._stop.is_set():
                try:
                    self._assign_at_end(consumer)
                    break
                except Exception as exc:  # broker not up yet: keep trying, the pages still work
                    log.warning("alert feed cannot start yet", extra={"error": str(exc)})
                    self._stop.wait(2.0)
            self.ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.5):
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("alert feed error", extra={"error": str(msg.error())})
                        continue
                    try:
                        alert = self.codec.decode(msg.value() or b"", "alert_event")
                    except DecodeError as exc:
                        self.undecodable += 1  # archival dead-letters it; the board just skips it
                        log.warning("undecodable alert record skipped",
                                    extra={"partition": msg.partition(), "offset": msg.offset(),
                                           "error": str(exc)})
                        continue
                    self.publish(alert)
        finally:
            consumer.close()
