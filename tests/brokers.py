"""Real Kafka brokers for tests, started with the same script users run
(``deploy/local/kafka.sh``), each in its own home folder and port: the tests' names for
:mod:`plantstream.localbroker`, which the benchmarks use too."""

from __future__ import annotations

from pathlib import Path

from plantstream.localbroker import LocalBroker as Broker
from plantstream.localbroker import broker_version, free_port

__all__ = ["Broker", "broker_version", "free_port", "new_broker"]


def new_broker(home: Path) -> Broker:
    """A broker in ``home`` on free ports, not started yet."""
    return Broker.new(home)
