"""The broker script users run: clear one-line answers for the awkward cases, and tests that
fail fast (not hang) when the broker dies under them."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from plantstream.kafka import create_topics
from plantstream.settings import Settings
from plantstream.topics import GATEWAY_READINGS

from brokers import Broker, new_broker
from kafka_io import read_topic


@pytest.fixture
def private_broker(tmp_path: Path):
    b = new_broker(tmp_path / "kafka")
    b.start()
    yield b
    b.stop()


def test_start_twice_and_stop_twice_say_so_in_one_line(private_broker: Broker) -> None:
    again = private_broker.run("start", check=False)
    assert again.returncode == 0
    assert again.stdout.strip().count("\n") == 0 and "already running" in again.stdout
    status = private_broker.run("status", check=False)
    assert status.returncode == 0 and str(private_broker.port) in status.stdout
    private_broker.stop()
    assert not private_broker.alive()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", private_broker.port))
    twice = private_broker.run("stop", check=False)
    assert twice.returncode == 0 and "not running" in twice.stdout
    assert private_broker.run("status", check=False).returncode == 3


def test_port_taken_gives_one_clear_line(tmp_path: Path) -> None:
    b = new_broker(tmp_path / "kafka")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", b.port))
        squatter.listen()
        proc = b.run("start", check=False)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0
    assert f"port {b.port} is already in use" in out and "PLANTSTREAM_KAFKA_PORT" in out
    assert "Traceback" not in out and "Exception" not in out
    assert len(out.splitlines()) == 1


def test_a_dead_broker_fails_the_test_fast_with_the_reason(private_broker: Broker, tmp_path: Path) -> None:
    s = Settings.from_env()
    from dataclasses import replace

    s = replace(s, kafka_bootstrap=private_broker.bootstrap, topic_prefix="dead.", home=tmp_path)
    create_topics(s)
    os.kill(private_broker.pid(), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(AssertionError, match="died"):
        read_topic(s, GATEWAY_READINGS.physical(s), until=lambda ms: False, timeout=120,
                   alive=private_broker.assert_alive)
    assert time.monotonic() - started < 15
