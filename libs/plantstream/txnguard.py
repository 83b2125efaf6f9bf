"""Guards around librdkafka's transactional producer for :mod:`plantstream.runner`.

``send_offsets_to_transaction`` can block forever, whatever its timeout, when the group
coordinator goes away in the middle of a transaction (a broker restart):
confluentinc/librdkafka#5456 and #5511, open in 2.16. The end-to-end broker-restart test
hung ingest that way for good. So the call runs in a helper thread; when it does not return
in time the producer is declared wedged, its transaction is left to the broker (which aborts
it after ``transaction.timeout.ms``) and the runner carries on with a fresh producer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition

from plantstream.errors import PlantstreamError
from plantstream.kafka import producer_config, transactional_id
from plantstream.settings import Settings

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 10_000
WEDGED_AFTER_S = 5.0  # beyond the call's own timeout


class ProducerWedged(PlantstreamError):
    """The transactional producer stopped answering; replace it (nothing was committed)."""


def transactional_producer(settings: Settings, name: str, tries: int = 4) -> Producer:
    """A producer with a fresh transactional id, transactions initialised (asked again while
    the broker is coming back: a replacement producer is made right after a failure)."""
    for n in range(1, tries + 1):
        producer = Producer(producer_config(
            settings, **{"transactional.id": transactional_id(settings, name),
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS}))
        try:
            producer.init_transactions(30)
            return producer
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal() or not err.retriable() or n == tries:
                raise
            log.warning("init_transactions failed, trying again", extra={"attempt": n, "error": err.str()})
            time.sleep(2.0 * n)
    raise AssertionError("unreachable")


def send_offsets(producer: Producer, offsets: list[TopicPartition], group_metadata: Any,
                 timeout: float = 30.0) -> None:
    """``producer.send_offsets_to_transaction`` that returns or raises within its timeout
    (plus :data:`WEDGED_AFTER_S`); raises :class:`ProducerWedged` when librdkafka hangs."""
    done = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            producer.send_offsets_to_transaction(offsets, group_metadata, timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=call, name="send-offsets", daemon=True).start()
    limit = timeout + WEDGED_AFTER_S
    if not done.wait(limit):
        raise ProducerWedged(f"send_offsets_to_transaction did not return within {limit:.0f}s "
                             "(librdkafka#5456, "
                             "the group coordinator moved); the batch is retried on a new producer")
    if failure:
        raise failure[0]
