"""A Kafka broker of one's own on loopback, started with the script users run
(``deploy/local/kafka.sh``) in its own home folder and on free ports: what the tests and the
benchmarks start, so they never use, or disturb, a broker someone else runs.

    with LocalBroker.start_new() as broker:
        settings = replace(Settings.from_env(), kafka_bootstrap=broker.bootstrap)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
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
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """``kafka.sh ARGS...`` for this broker; output captured."""
        return subprocess.run([str(KAFKA_SH), *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=timeout)

    def start(self) -> None:
        """Start it and wait until it answers (kafka.sh's health check); on failure the
        error carries the script's output and the end of the broker's log."""
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


def broker_version(env: dict[str, str] | None = None) -> str:
    """The Apache Kafka version of the installed broker jars ("unknown" if none)."""
    proc = subprocess.run([str(KAFKA_SH), "version"], env=env, text=True, capture_output=True, timeout=60)
    return (proc.stdout or proc.stderr).strip() or "unknown"
