"""A Kafka broker of one's own on loopback, started with the script users run
(``deploy/local/kafka.sh``) in its own home folder and on free ports: what the tests and the
benchmarks start, so they never use, or disturb, a broker someone else runs.

    with LocalBroker.start_new() as broker:
        settings = replace(Settings.from_env(), kafka_bootstrap=broker.bootstrap)

:class:`LocalCluster` starts several of them as one KRaft cluster (fault tests that kill a
partition leader).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plantstream.errors import PlantstreamError
from plantstream.settings import REPO_ROOT

KAFKA_SH = REPO_ROOT / "deploy" / "local" / "kafka.sh"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def share_admin_password() -> str:
    """Give every local broker this process starts, and every client it makes, one admin
    password: set ``PLANTSTREAM_KAFKA_ADMIN_PASSWORD`` (kafka.sh formats new brokers with it)
    and the client login (``PLANTSTREAM_KAFKA_USERNAME``/``_PASSWORD``, read by
    ``Settings.from_env`` here and inherited by the services this process spawns), unless set."""
    password = os.environ.get("PLANTSTREAM_KAFKA_ADMIN_PASSWORD") or secrets.token_hex(16)
    os.environ["PLANTSTREAM_KAFKA_ADMIN_PASSWORD"] = password
    os.environ.setdefault("PLANTSTREAM_KAFKA_USERNAME", "admin")
    if not os.environ.get("PLANTSTREAM_KAFKA_PASSWORD"):
        os.environ["PLANTSTREAM_KAFKA_PASSWORD"] = password
    return password


class LocalBrokerError(PlantstreamError, RuntimeError):
    """The local broker or one of its tools failed; the message says how (with the log tail)."""


@dataclass
class LocalBroker:
    """One broker: its folder (config, data, logs, pid file) and ports. ``stop()`` also removes
    the folder when this object made it (:meth:`start_new` without a parent)."""

    home: Path
    port: int
    controller_port: int
    heap: str | None = None  # broker JVM heap (kafka.sh's default when None)
    owns_home: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)  # kafka.sh settings of a cluster node
    started: bool = field(default=False, init=False)

    @classmethod
    def new(cls, home: Path, heap: str | None = None) -> LocalBroker:
        """A broker in ``home`` on free ports, not started yet."""
        return cls(home, free_port(), free_port(), heap)

    @classmethod
    def start_new(cls, parent: Path | None = None, heap: str | None = None) -> LocalBroker:
        """A started broker in a new temporary folder (under ``parent`` if given)."""
        home = Path(tempfile.mkdtemp(prefix="plantstream-kafka-", dir=parent))
        broker = cls(home, free_port(), free_port(), heap, owns_home=parent is None)
        broker.start()
        return broker

    @classmethod
    def existing(cls, bootstrap: str, home: Path) -> LocalBroker:
        """A broker someone else runs (only its tools are used; ``stop()`` leaves it up)."""
        return cls(home, int(bootstrap.rpartition(":")[2]), 0)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment that points kafka.sh at this broker."""
        env = dict(os.environ)
        env.update({
            "PLANTSTREAM_KAFKA_HOME": str(self.home),
            "PLANTSTREAM_KAFKA_PORT": str(self.port),
            "PLANTSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        })
        if self.heap:
            env["PLANTSTREAM_KAFKA_HEAP"] = self.heap
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``kafka.sh ARGS...`` for this broker; output captured."""
        return subprocess.run([str(KAFKA_SH), *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=timeout)

    def start(self) -> None:
        """Start it and wait until it answers (kafka.sh's health check); on failure the
        error carries the script's output and the end of the broker's log."""
        share_admin_password()
        proc = self.run("start", check=False)
        if proc.returncode != 0:
            raise LocalBrokerError(
                f"the Kafka broker did not start (kafka.sh start exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}\nlast log lines:\n{self.log_tail()}")
        self.started = True

    def stop(self) -> None:
        """Stop it (frees the port); remove its folder if this object made it."""
        if self.controller_port:  # not a broker someone else runs
            self.run("stop", check=False, timeout=120)
            self.started = False
        if self.owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def tool(self, command: str, args: Sequence[str], timeout: float) -> str:
        """Run a kafka.sh tool command (perf-producer, perf-consumer, topics); return stdout."""
        try:
            proc = self.run(command, *args, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LocalBrokerError(f"kafka.sh {command} did not finish within {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise LocalBrokerError(
                f"kafka.sh {command} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def version(self) -> str:
        return broker_version(self.env)

    def pid(self) -> int | None:
        try:
            return int((self.home / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = (self.home / "logs" / "server.log").read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def assert_alive(self) -> None:
        """Fail fast, with the reason, when the broker has died under a test."""
        if not self.alive():
            raise AssertionError(
                f"the Kafka broker on port {self.port} died (pid file {self.home}/kafka.pid); "
                f"last log lines:\n{self.log_tail()}")

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalCluster:
    """Brokers on loopback forming one KRaft cluster: every node a combined broker and
    controller and a voter, topics replicated 3 ways with ``min.insync.replicas`` 2, so any
    one node may die without stopping anyone (kafka.sh's PLANTSTREAM_KAFKA_NODE_ID, _VOTERS,
    _CLUSTER_ID and _REPLICAS)."""

    nodes: dict[int, LocalBroker]

    @classmethod
    def new(cls, home: Path, size: int = 3, heap: str | None = None) -> LocalCluster:
        ports = {node: (free_port(), free_port()) for node in range(1, size + 1)}
        voters = ",".join(f"{node}@127.0.0.1:{ctl}" for node, (_, ctl) in ports.items())
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        replicas = str(min(size, 3))
        return cls({node: LocalBroker(home / f"node{node}", port, ctl, heap, extra_env={
            "PLANTSTREAM_KAFKA_NODE_ID": str(node), "PLANTSTREAM_KAFKA_VOTERS": voters,
            "PLANTSTREAM_KAFKA_CLUSTER_ID": cluster_id, "PLANTSTREAM_KAFKA_REPLICAS": replicas})
            for node, (port, ctl) in ports.items()})

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.nodes.values())

    @property
    def replicas(self) -> int:
        return min(len(self.nodes), 3)

    def start(self, *nodes: int) -> None:
        """Start the nodes (all by default) at once: each waits for a quorum of the others."""
        self._each(lambda b: b.start(), nodes)

    def stop(self) -> None:
        self._each(lambda b: b.stop(), ())

    def kill(self, node: int) -> None:
        """SIGKILL one node: no controlled shutdown, no leadership handed over first."""
        broker = self.nodes[node]
        pid = broker.pid()
        if pid is None:
            raise LocalBrokerError(f"node {node} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while broker.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.started = False

    def any_alive(self) -> LocalBroker:
        """A running node (to run Kafka's tools on)."""
        for broker in self.nodes.values():
            if broker.alive():
                return broker
        raise LocalBrokerError("no node of the cluster is running")

    def _each(self, action: Callable[[LocalBroker], None], nodes: Sequence[int]) -> None:
        errors: list[BaseException] = []

        def run(broker: LocalBroker) -> None:
            try:
                action(broker)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, first one wins
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(self.nodes[n],)) for n in (nodes or self.nodes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]


def broker_version(env: dict[str, str] | None = None) -> str:
    """The Apache Kafka version of the installed broker jars ("unknown" if none)."""
    proc = subprocess.run([str(KAFKA_SH), "version"], env=env, text=True, capture_output=True, timeout=60)
    return (proc.stdout or proc.stderr).strip() or "unknown"
