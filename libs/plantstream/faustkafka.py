"""faust's Kafka consumer, fixed for topics written by transactional producers.

Every topic a plantstream processor writes (e.g. ``readings.valid`` from validation) is
written in Kafka transactions: each transaction leaves a commit marker that takes an offset
but is never delivered, so the offsets a consumer sees have gaps. faust-streaming 0.15's
consumer mishandles these gaps in two ways (measured: with one transaction per 10 records,
the anomaly service processed 1,500 records in 3 s but its committed offsets advanced by one
transaction per ``broker_commit_interval``, ~7 records/s, so the group's lag, the
``plantstream status`` figures and any redelivery after a restart grew without bound):

- The gap it records for a message that follows a gap includes the message's own offset, so
  the offset appears twice in its sorted list of acknowledged offsets; the run of consecutive
  offsets it commits stops at that duplicate, and each commit moves past one gap only.
- It records no gap after a message at offset 0 (``if gap > 1 and r_offset``), which stops
  that partition's commits for good (``min(acked) - committed > 1``).

:class:`GapAwareConsumer` records each gap itself, exactly the undelivered offsets between
two delivered messages, and ignores faust's own gap records.

faust also reads ``read_uncommitted`` unless the app itself runs transactions
(``processing_guarantee="exactly_once"``), so records of aborted upstream transactions would
be processed. :class:`ReadCommittedThread` sets ``read_committed`` on the aiokafka consumer
before it starts; faust has no setting for it.

Use :class:`App` instead of ``faust.App``.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

READ_COMMITTED = "read_committed"


class ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread with an aiokafka consumer reading ``read_committed``."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute in start() to build its fetcher; faust builds the
        # consumer with read_uncommitted and starts it later (AIOKafkaConsumerThread.on_start).
        if not hasattr(consumer, "_isolation_level"):
            raise RuntimeError("aiokafka.AIOKafkaConsumer has no _isolation_level: "
                               "update plantstream.faustkafka for this aiokafka version")
        consumer._isolation_level = READ_COMMITTED
        return consumer


class GapAwareConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with correct offset-gap bookkeeping (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        deliver = self.callback

        async def on_message(message: Message) -> None:
            await self._note_gap(message)
            await deliver(message)

        # _drain_messages calls this for every fetched message, in offset order per
        # partition, before it updates _read_offset to the message's offset.
        self.callback = on_message

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def _note_gap(self, message: Message) -> None:
        tp: TP = message.tp
        # The last delivered offset; right after a seek, the committed offset (next to read).
        last = self._read_offset[tp]
        if last is None or message.offset <= last + 1:
            return
        if self.app.topics.acks_enabled_for(message.topic):
            # faust's _add_gap records [offset_from, offset_to], both ends included.
            await faust_consumer.Consumer._add_gap(self, tp, last + 1, message.offset - 1)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """faust's own gap records (off by one, none after offset 0) are replaced by
        :meth:`_note_gap`."""
        return None


class GapAwareTransport(faust_aiokafka.Transport):
    Consumer = GapAwareConsumer


class App(faust.App):
    """``faust.App`` consuming through :class:`GapAwareConsumer` (``kafka://`` brokers)."""

    def _new_transport(self) -> GapAwareTransport:
        return GapAwareTransport(self.conf.broker_consumer, self)
