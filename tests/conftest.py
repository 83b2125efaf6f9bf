"""Session-scoped real infrastructure: one Kafka broker for the whole run (started with the
user's own script) and, per test, a fresh topic prefix and embedded ClickHouse folder, so
tests never see each other's data."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from plantstream.kafka import create_topics
from plantstream.localbroker import share_admin_password
from plantstream.settings import Settings

from brokers import Broker, broker_version, new_broker

_counter = itertools.count()
# Services under test (in this process or spawned with this environment) hand a SIGKILLed
# copy's partitions over after Kafka's minimum session, not the shipped 10 s: the crash tests
# wait for that hand-over once per kill.
os.environ.setdefault("PLANTSTREAM_GROUP_SESSION_SECONDS", "6")
# Every broker of the run (the shared one, and the private ones some tests start) has one admin
# password, which this process and the services it spawns log in with (security is on, as shipped).
share_admin_password()


def pytest_report_header(config: pytest.Config) -> str:
    return f"kafka broker: Apache Kafka {broker_version()} (KRaft, deploy/local/kafka.sh)"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = new_broker(tmp_path_factory.mktemp("kafka"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(autouse=True)
def _broker_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    """Integration tests fail fast with a clear message if the shared broker has died."""
    if "broker" in request.fixturenames:
        b: Broker = request.getfixturevalue("broker")
        b.assert_alive()
    yield


@pytest.fixture
def settings(broker: Broker, tmp_path: Path) -> Settings:
    """Settings for one test: its own topic prefix (topics created) and ClickHouse folder."""
    prefix = f"t{next(_counter)}-{uuid.uuid4().hex[:6]}."
    s = replace(
        Settings.from_env(),
        home=tmp_path,
        kafka_bootstrap=broker.bootstrap,
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        topic_prefix=prefix,
        partitions=4,
        instance=f"test-{os.getpid()}",
    )
    create_topics(s)
    return s


def settings_env(s: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``s`` in a subprocess (a service under test)."""
    env = dict(os.environ)
    env.update({
        "PLANTSTREAM_HOME": str(s.home),
        "PLANTSTREAM_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "PLANTSTREAM_CLICKHOUSE_URL": s.clickhouse_url,
        "PLANTSTREAM_TOPIC_PREFIX": s.topic_prefix,
        "PLANTSTREAM_PARTITIONS": str(s.partitions),
        "PLANTSTREAM_LOG_FORMAT": "json",
    })
    return env


@pytest.fixture
def service_env(settings: Settings) -> dict[str, str]:
    return settings_env(settings)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()) or "settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
