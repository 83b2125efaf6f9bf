"""Helpers shared by the benchmark scripts: a private Kafka broker, results JSON, figure
tables and the facts about the machine a figure was measured on.

Every benchmark that needs Kafka starts its own broker (deploy/local/kafka.sh, the script
users run) on a free port with its own PLANTSTREAM_KAFKA_HOME under a temporary folder, so a
benchmark never measures, or disturbs, a broker someone else is using
(:class:`plantstream.localbroker.LocalBroker`, the tests' broker too):

    with LocalBroker.start_new() as broker:
        settings = replace(Settings.from_env(), kafka_bootstrap=broker.bootstrap)
        ...
    write_results("pipeline", result)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"

for _src in (REPO / "libs", REPO / "services"):  # run from a checkout without `pip install -e`
    if str(_src) not in sys.path:
        sys.path.append(str(_src))

from plantstream.cli.common import print_table  # noqa: E402  (after the path set-up above)


class BenchError(RuntimeError):
    """A benchmark could not run (the broker or a tool failed); the message says why."""


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


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a live process in MiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


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
