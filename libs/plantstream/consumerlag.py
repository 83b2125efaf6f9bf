"""Consumer lag per assigned partition, measured by each copy from its own consumer: the
partition's high watermark (last stable offset under read_committed) minus the copy's
position. Both numbers are local to the client (no broker round trip), so it is cheap to
refresh every few seconds from the service loop.

(``plantstream.lag`` answers the same question from outside, per consumer group, for
``plantstream status``; this is what each copy reports on its metrics endpoint.)

Transaction commit markers take an offset each but are never delivered, so a caught-up
consumer of a transactional topic may show a lag of 1 on a partition until its next fetch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException

from plantstream.metrics import ServiceMetrics

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0


class ConsumerLagMeter:
    """Refreshes ``metrics.lag`` for a confluent-kafka consumer's assignment."""

    def __init__(self, metrics: ServiceMetrics, every: float = REFRESH_SECONDS) -> None:
        self.metrics = metrics
        self.every = every
        self._last = 0.0

    def maybe_update(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        try:
            self.update(consumer)
        except (KafkaException, RuntimeError) as exc:  # metrics must never stop the service
            log.debug("lag not measured", extra={"error": str(exc)})

    def update(self, consumer: Consumer) -> None:
        positions = consumer.position(consumer.assignment())
        seen = set()
        for tp in positions:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # nothing fetched yet for this partition
            position = tp.offset if tp.offset >= 0 else max(low, 0)
            self.metrics.lag(tp.topic, tp.partition, max(high - position, 0))
            seen.add((tp.topic, tp.partition))
        for topic, partition in list(self.metrics.lags):
            if (topic, partition) not in seen:
                self.metrics.forget_lag(topic, partition)


def watch_faust_lag(app: Any, metrics: ServiceMetrics, every: float = REFRESH_SECONDS) -> None:
    """Register a faust timer that refreshes ``metrics.lag`` for the app's assigned source
    partitions: high watermark minus (last offset handed to the agents + 1)."""

    @app.timer(every, name=f"{metrics.service}.consumer_lag")
    async def consumer_lag() -> None:
        if app.consumer is None or app.rebalancing:
            return
        try:
            update_faust_lag(app.consumer, metrics)
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the service
            log.debug("lag not measured", extra={"error": str(exc)})


def update_faust_lag(consumer: Any, metrics: ServiceMetrics) -> None:
    seen = set()
    changelogs = consumer.app.tables.changelog_topics if hasattr(consumer.app, "tables") else set()
    for tp in consumer.assignment():
        if tp.topic in changelogs:
            continue  # table changelogs: read during recovery only, not input
        high = consumer.highwater(tp)
        if high is None:
            continue
        # faust's last offset handed to a stream, else its last committed one
        last = consumer._read_offset.get(tp)
        if last is None:
            last = consumer._committed_offset.get(tp)
        if last is None:
            continue  # nothing read or committed yet: unknown
        position = last + 1
        metrics.lag(tp.topic, tp.partition, max(high - position, 0))
        seen.add((tp.topic, tp.partition))
    for topic, partition in list(metrics.lags):
        if (topic, partition) not in seen:
            metrics.forget_lag(topic, partition)
