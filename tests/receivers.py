"""Real receivers for notification tests: an HTTP webhook endpoint (http.server in a thread)
and an SMTP server (aiosmtpd), plus ``wait_for``; for the notifier's tests (the maintenance
tests keep their own copy in maintenance_support.py until its notify agent is gone)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from plantstream.localbroker import free_port

__all__ = ["Hook", "MailSink", "WebhookReceiver", "free_port", "start_smtp", "wait_for"]


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() when received

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; answers 200, or a 307 redirect to ``/landed`` for paths under
    ``/redirect`` (a receiver trying to send the platform elsewhere)."""

    received: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Hook(self.path, dict(self.headers.items()), body, time.monotonic()))
                if self.path.startswith("/redirect"):
                    self.send_response(307)
                    self.send_header("Location", receiver.url("/landed"))
                else:
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailSink:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def start_smtp() -> tuple[Controller, MailSink]:
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, sink


def wait_for(check: Any, timeout: float, what: str, alive: Any = None) -> Any:
    """Poll ``check()`` until it returns something truthy; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive:
            alive()
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Service:
    """``python -m <module>`` (maintenance by default) with the given environment; logs go to
    a file."""

    def __init__(self, env: dict[str, str], log: Path, module: str = "maintenance") -> None:
        self.env, self.log, self.module = env, log, module
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        return self

    def assert_running(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"{self.module} service exited ({self.proc and self.proc.returncode}):\n{self.tail()}"

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
