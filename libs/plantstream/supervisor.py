"""Start, stop and inspect the services as separate local processes (``make up``/``make demo``).

Each copy runs ``python -m <service>`` with its log in ``$PLANTSTREAM_HOME/logs`` and its pid
in ``$PLANTSTREAM_HOME/run``, as the service's own Kafka principal (provisioned here with the
caller's admin login, :mod:`plantstream.kafkaauth`). In production an orchestrator does this (deploy/).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from plantstream.errors import PlantstreamError
from plantstream.kafkaauth import ADMIN_ONLY, service_env
from plantstream.settings import Settings

# Appended, not in pipeline order: a service's index fixes its metrics port (base + 10 * index).
SERVICES = ("ingest", "validation", "anomaly", "maintenance", "archival", "notifier")
# Started and stopped with the services, but not a pipeline stage (no consumer group, no lag):
# the web app for maintenance staff.
APPS = ("board",)
RUNNABLE = SERVICES + APPS


@dataclass
class ServiceProcess:
    service: str
    copy: int
    pid: int | None
    alive: bool
    log: Path


def _paths(settings: Settings, service: str, copy: int) -> tuple[Path, Path]:
    run, logs = settings.home / "run", settings.home / "logs"
    run.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    return run / f"{service}-{copy}.pid", logs / f"{service}-{copy}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def status(settings: Settings) -> list[ServiceProcess]:
    out = []
    run = settings.home / "run"
    for pidfile in sorted(run.glob("*.pid")) if run.is_dir() else []:
        service, _, copy = pidfile.stem.rpartition("-")
        try:
            pid = int(pidfile.read_text())
        except ValueError:
            pid = None
        out.append(ServiceProcess(service, int(copy), pid, bool(pid and _alive(pid)),
                                  _paths(settings, service, int(copy))[1]))
    return out


def metrics_port_for(base: str, service: str, copy: int) -> int | None:
    """A numeric ``PLANTSTREAM_METRICS_PORT`` is a base: copy ``c`` of the i-th service serves on
    ``base + 10 * i + c``, so every copy on one host gets its own, predictable port (0, auto and
    unset are passed through: off, or a free port written to ``run/<service>-<copy>.metrics``)."""
    try:
        n = int(base)
    except ValueError:
        return None
    if n <= 0:
        return None
    if copy >= 10:
        raise PlantstreamError(f"metrics ports are base + 10 * service + copy: copy {copy} of {service} "
                               "needs PLANTSTREAM_METRICS_PORT=auto")
    return n + 10 * RUNNABLE.index(service) + copy


def start(settings: Settings, service: str, copy: int = 0, env: dict[str, str] | None = None) -> int:
    if service not in RUNNABLE:
        raise PlantstreamError(f"unknown service {service!r}; choose from {', '.join(RUNNABLE)}")
    pidfile, logfile = _paths(settings, service, copy)
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text())
            if _alive(pid):
                return pid
        except ValueError:
            pass
    child_env = dict(env or os.environ)
    child_env.setdefault("PLANTSTREAM_HOME", str(settings.home))
    child_env["PLANTSTREAM_INSTANCE"] = f"{service}-{copy}"
    for name in ADMIN_ONLY:
        child_env.pop(name, None)
    child_env.update(service_env(settings, service))  # its own Kafka principal, least privilege
    port = metrics_port_for(child_env.get("PLANTSTREAM_METRICS_PORT", ""), service, copy)
    if port is not None:
        child_env["PLANTSTREAM_METRICS_PORT"] = str(port)
    with logfile.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", service], stdout=log, stderr=log,
                                env=child_env, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop(settings: Settings, service: str | None = None, timeout: float = 20.0) -> list[str]:
    """SIGTERM the matching copies, wait for them to commit and leave, SIGKILL stragglers."""
    stopped = []
    targets = [p for p in status(settings) if service in (None, p.service)]
    for p in targets:
        if p.pid and p.alive:
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in targets:
        while p.pid and _alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if p.pid and _alive(p.pid):
            os.kill(p.pid, signal.SIGKILL)
        _paths(settings, p.service, p.copy)[0].unlink(missing_ok=True)
        stopped.append(f"{p.service}-{p.copy}")
    return stopped
