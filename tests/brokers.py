"""Real Kafka brokers for tests, started with the same script users run
(``deploy/local/kafka.sh``), each in its own home folder and port."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    home: Path
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PLANTSTREAM_KAFKA_HOME": str(self.home),
            "PLANTSTREAM_KAFKA_PORT": str(self.port),
            "PLANTSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        })
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KAFKA_SH), *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=180)

    def start(self) -> None:
        proc = self.run("start", check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"broker did not start: {proc.stdout}{proc.stderr}")

    def stop(self) -> None:
        self.run("stop", check=False)

    def pid(self) -> int | None:
        pidfile = self.home / "kafka.pid"
        try:
            return int(pidfile.read_text().strip())
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
        log = self.home / "logs" / "server.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def assert_alive(self) -> None:
        """Fail fast, with the reason, when the broker has died under a test."""
        if not self.alive():
            raise AssertionError(
                f"the Kafka broker on port {self.port} died (pid file {self.home}/kafka.pid); "
                f"last log lines:\n{self.log_tail()}")


def new_broker(home: Path) -> Broker:
    return Broker(home=home, port=free_port(), controller_port=free_port())


def broker_version() -> str:
    proc = subprocess.run([str(KAFKA_SH), "version"], text=True, capture_output=True, timeout=60)
    return (proc.stdout or proc.stderr).strip() or "unknown"
