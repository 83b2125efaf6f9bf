"""Helpers shared by the benchmark scripts: a private Kafka broker, results JSON, figure
tables and the facts about the machine a figure was measured on.

Every benchmark that needs Kafka starts its own broker (deploy/local/kafka.sh, the script
users run) on a free port with its own PLANTSTREAM_KAFKA_HOME under a temporary folder, so a
benchmark never measures, or disturbs, a broker someone else is using.

    with PrivateBroker.start_new() as broker:
        settings = replace(Settings.from_env(), kafka_bootstrap=broker.bootstrap)
        ...
    write_results("pipeline", result)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"
RESULTS_DIR = REPO / "bench" / "results"

for _src in (REPO / "libs", REPO / "services"):  # run from a checkout without `pip install -e`
    if str(_src) not in sys.path:
        sys.path.append(str(_src))

from plantstream.cli.common import print_table  # noqa: E402  (after the path set-up above)


class BenchError(RuntimeError):
    """A benchmark could not run (the broker or a tool failed); the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateBroker:
    """A broker of our own on loopback; ``stop()`` also removes its folder if we made it."""

    home: Path
    port: int
    controller_port: int
    owns_home: bool = False
    started: bool = field(default=False, init=False)

    @classmethod
    def start_new(cls, parent: Path | None = None, heap: str | None = None) -> PrivateBroker:
        home = Path(tempfile.mkdtemp(prefix="plantstream-bench-kafka-", dir=parent))
        broker = cls(home, free_port(), free_port(), owns_home=parent is None)
        broker.start(heap)
        return broker

    @classmethod
    def existing(cls, bootstrap: str, home: Path) -> PrivateBroker:
        """A broker someone else runs (only its tools are used; ``stop()`` leaves it up)."""
        return cls(home, int(bootstrap.rpartition(":")[2]), 0)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, heap: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PLANTSTREAM_KAFKA_HOME": str(self.home), "PLANTSTREAM_KAFKA_PORT": str(self.port),
                    "PLANTSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port)})
        if heap:
            env["PLANTSTREAM_KAFKA_HEAP"] = heap
        return env

    def start(self, heap: str | None = None) -> None:
        proc = subprocess.run([str(KAFKA_SH), "start"], env=self.env(heap), text=True,
                              capture_output=True, timeout=240)
        if proc.returncode != 0:
            raise BenchError(f"the benchmark broker did not start (kafka.sh start exit {proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
        self.started = True

    def tool(self, command: str, args: Sequence[str], timeout: float) -> str:
        """Run a kafka.sh tool command (perf-producer, perf-consumer, topics); return stdout."""
        try:
            proc = subprocess.run([str(KAFKA_SH), command, *args], env=self.env(), text=True,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"kafka.sh {command} did not finish within {timeout:.0f}s") from exc
        if proc.returncode != 0:
            raise BenchError(f"kafka.sh {command} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        return proc.stdout

    def version(self) -> str:
        proc = subprocess.run([str(KAFKA_SH), "version"], env=self.env(), text=True, capture_output=True)
        return proc.stdout.strip() or "unknown"

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(KAFKA_SH), "stop"], env=self.env(), capture_output=True, timeout=120)
            self.started = False
        if self.owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PrivateBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def machine_facts() -> dict[str, Any]:
    """What a figure depends on besides the code: cores, load, Python."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.machine(),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def write_results(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``result`` as bench/results/<name>.json (or ``out``); return the path."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def figure_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print a titled table of figures (the CLI's table format)."""
    print(f"\n{title}", flush=True)
    print_table(rows, columns)
    sys.stdout.flush()


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 99)) -> dict[str, float | int | None]:
    """``{"p50": .., "p99": .., "n": ..}`` by the nearest-rank method (None when empty)."""
    data = sorted(values)
    out: dict[str, float | int | None] = {}
    for q in qs:
        if not data:
            out[f"p{q:g}"] = None
            continue
        rank = max(1, min(len(data), int(-(-q * len(data) // 100))))  # ceil(q/100 * n)
        out[f"p{q:g}"] = round(float(data[rank - 1]), 1)
    out["n"] = len(data)
    return out


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminate(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM a child we started, SIGKILL it if it does not leave in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Deadline:
    """A time budget: ``left()`` seconds remain of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()
