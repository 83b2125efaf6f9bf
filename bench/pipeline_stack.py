"""The whole platform as the pipeline benchmark runs it: topics, ClickHouse schema, asset
registry and the five services as separate processes (``plantstream.supervisor``), all under
one temporary PLANTSTREAM_HOME against a given broker; plus a watcher that notes when
batches of sampled machines become visible on readings.valid."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import BenchError, process_cpu_seconds, process_rss_mb
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from plantstream import supervisor
from plantstream.assets import publish_assets
from plantstream.kafka import consumer_config
from plantstream.kafkaauth import login_env
from plantstream.lag import group_lags
from plantstream.readingbatch import decode_readings
from plantstream.settings import Settings
from plantstream.topics import READINGS_VALID, machine_key

PLANTSTREAM_CLI = Path(sys.executable).with_name("plantstream")
BROKER = "kafka-broker"


class Stack:
    def __init__(self, home: Path, bootstrap: str, prefix: str = "bench.", partitions: int = 4) -> None:
        self.settings = replace(
            Settings.from_env(), home=home, kafka_bootstrap=bootstrap, topic_prefix=prefix,
            clickhouse_url=f"chdb://{home / 'clickhouse'}", partitions=partitions, instance="bench")
        self.services: list[str] = []
        self.broker_pid: int | None = None  # our own broker: its CPU counts with the services'

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTSTREAM_")}
        env.update({"PLANTSTREAM_HOME": str(s.home), "PLANTSTREAM_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                    "PLANTSTREAM_CLICKHOUSE_URL": s.clickhouse_url,
                    "PLANTSTREAM_TOPIC_PREFIX": s.topic_prefix,
                    "PLANTSTREAM_PARTITIONS": str(s.partitions),
                    "PLANTSTREAM_QUERY_PORT": "0", **login_env(s)})
        return env

    def cli(self, *args: str) -> str:
        proc = subprocess.run([str(PLANTSTREAM_CLI), *args], env=self.env(), text=True,
                              capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise BenchError(f"plantstream {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def prepare(self, assets: list[dict[str, Any]]) -> None:
        """Topics from the catalog, ClickHouse migrations, the asset registry."""
        self.cli("topics", "create")
        self.cli("db", "migrate")
        publish_assets(self.settings, assets)

    def start(self, services: tuple[str, ...] = supervisor.SERVICES) -> None:
        self.services = list(services)
        for name in services:
            supervisor.start(self.settings, name, env=self.env())

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Wait until every service's consumer group has a member; return the seconds taken."""
        t0 = time.monotonic()
        missing = set(self.services)
        while missing and time.monotonic() - t0 < timeout:
            dead = [p.service for p in supervisor.status(self.settings) if not p.alive]
            if dead:
                raise BenchError(f"service(s) {', '.join(dead)} exited at start-up; see their logs in "
                                 f"{self.settings.home / 'logs'}:\n{self.log_tail(dead[0])}")
            members = {g.service: g.members for g in group_lags(self.settings)}
            missing = {s for s in missing if members.get(s, 0) < 1}
            if missing:
                time.sleep(0.5)
        if missing:
            raise BenchError(f"service(s) {', '.join(sorted(missing))} did not join their consumer group "
                             f"within {timeout:.0f}s")
        return time.monotonic() - t0

    def log_tail(self, service: str, lines: int = 15) -> str:
        log = self.settings.home / "logs" / f"{service}-0.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def lags(self) -> tuple[dict[str, int], dict[str, int]]:
        """(lag, end offsets) per running service, in messages."""
        got = {g.service: g for g in group_lags(self.settings) if g.service in self.services}
        return {s: g.lag for s, g in got.items()}, {s: g.end for s, g in got.items()}

    def alive(self) -> dict[str, bool]:
        return {p.service: p.alive for p in supervisor.status(self.settings)}

    def pids(self) -> dict[str, int]:
        """Live processes of the platform by name: the services and (ours) the Kafka broker."""
        out = {p.service: p.pid for p in supervisor.status(self.settings) if p.pid and p.alive}
        if self.broker_pid:
            out[BROKER] = self.broker_pid
        return out

    def cpu_seconds(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids().items():
            cpu = process_cpu_seconds(pid)
            if cpu is not None:
                out[name] = cpu
        return out

    def rss_mb(self) -> dict[str, float]:
        return {name: rss for name, pid in self.pids().items() if (rss := process_rss_mb(pid)) is not None}

    def stop(self) -> None:
        supervisor.stop(self.settings, timeout=20.0)


class ValidWatcher(threading.Thread):
    """Consumes readings.valid (read_committed, from its end when started) and, for the
    sampled machines, notes per batch (machine, last reading ts) the message timestamp and
    the moment it became visible to consumers (both µs)."""

    def __init__(self, settings: Settings, machines: set[str], tenant: str, site: str) -> None:
        super().__init__(daemon=True, name="valid-watcher")
        self.settings = settings
        self.keys = {machine_key(tenant, site, m): m for m in machines}
        self.message_ts: dict[tuple[str, int], float] = {}
        self.visible: dict[tuple[str, int], float] = {}
        self.halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, f"bench-valid-watcher-{os.getpid()}"))
        topic = READINGS_VALID.physical(self.settings)
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self.ready.set()
        try:
            while not self.halt.is_set():
                msg = consumer.poll(0.1)  # one at a time: returns as soon as a record is there
                if msg is None or msg.error() or msg.key() not in self.keys:
                    continue
                seen = time.time_ns() // 1000
                view = decode_readings(msg.value())
                if not len(view):
                    continue
                key = (self.keys[msg.key()], int(view.ts.max()))
                self.visible.setdefault(key, seen)
                self.message_ts.setdefault(key, msg.timestamp()[1] * 1000)
        finally:
            consumer.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
