"""Read-only SQL over loopback HTTP, served by the archival service in embedded mode.

The embedded engine is single-process, so while archival holds the data directory this is
how ``plantstream sql`` and ``plantstream report`` reach it. Queries never touch the writer's
handle: each scope (every tenant, or one tenant of an analyst token) gets its own engine
session locked by :class:`~plantstream.db.readonly.AnalystSession` (limits, the tenant's row
filter, ``readonly = 1``). A random token in ``$PLANTSTREAM_HOME/run`` (mode 0600) keeps other
local users out; with ``PLANTSTREAM_ANALYST_TOKENS_FILE`` set, the analyst token header picks
the scope. Results go back as an Arrow IPC stream.

    GET  /health  -> {"service": "archival", "clickhouse_url": ...}
    POST /query   (body: SQL, headers X-Plantstream-Token [, X-Plantstream-Analyst-Token])
                  -> Arrow stream, or 400/403 JSON {"error", "kind": "refused" | "failed"}
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from plantstream.db.query import (
    ANALYST_TOKEN_HEADER,
    ARROW_STREAM,
    TOKEN_HEADER,
    port_file,
    scope_for_token,
    token_file,
)
from plantstream.db.readonly import AnalystSession, QueryRefused, Scope
from plantstream.errors import PlantstreamError
from plantstream.settings import Settings

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 1 << 20


class QueryServer:
    """Owns the HTTP server thread, the port and token files, and one locked analyst session
    per scope (``connect`` opens a fresh engine handle for each)."""

    def __init__(self, connect: Callable[[], Client], settings: Settings) -> None:
        self.connect = connect
        self.settings = settings
        self.token = secrets.token_hex(16)
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self.sessions: dict[Scope, AnalystSession] = {}
        self._sessions_lock = threading.Lock()

    def session(self, scope: Scope) -> AnalystSession:
        with self._sessions_lock:
            if scope not in self.sessions:
                self.sessions[scope] = AnalystSession(self.connect(), scope)
            return self.sessions[scope]

    def start(self) -> int:
        self.session(Scope(None))  # fail at start-up, not at the first query, if locking fails
        handler = type("Handler", (_Handler,), {"server_state": self})
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", self.settings.query_port), handler)
        except OSError as exc:
            log.warning("query port busy, using a free one",
                        extra={"port": self.settings.query_port, "error": str(exc)})
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        run = port_file(self.settings).parent
        run.mkdir(parents=True, exist_ok=True)
        tok = token_file(self.settings)
        tok.touch(mode=0o600, exist_ok=True)
        os.chmod(tok, 0o600)
        tok.write_text(self.token)
        port_file(self.settings).write_text(str(self.port))
        threading.Thread(target=self.httpd.serve_forever, name="query-server", daemon=True).start()
        log.info("read-only query endpoint listening", extra={"port": self.port})
        return self.port

    def stop(self) -> None:
        for path in (port_file(self.settings), token_file(self.settings)):
            path.unlink(missing_ok=True)
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        with self._sessions_lock:
            for session in self.sessions.values():
                session.close()
            self.sessions.clear()

    def run(self, sql: str, analyst_token: str | None) -> bytes:
        table = self.session(scope_for_token(self.settings, analyst_token)).arrow(sql)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()


class _Handler(BaseHTTPRequestHandler):
    server_state: QueryServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        log.debug("query endpoint: " + format, *args)

    def _json(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if self.path != "/health":
            self._json(404, {"error": "not found; POST SQL to /query"})
            return
        self._json(200, {"service": "archival", "clickhouse_url": self.server_state.settings.clickhouse_url})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        state = self.server_state
        if self.path != "/query":
            self._json(404, {"error": "not found; POST SQL to /query"})
            return
        if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, ""), state.token):
            where = token_file(state.settings)
            self._json(403, {"error": f"wrong or missing {TOKEN_HEADER}; it is in {where}",
                             "kind": "refused"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_SQL_BYTES:
            self._json(400, {"error": f"SQL longer than {MAX_SQL_BYTES} bytes is refused", "kind": "refused"})
            return
        try:
            sql = self.rfile.read(length).decode("utf-8")
        except UnicodeDecodeError:
            self._json(400, {"error": "the SQL is not valid UTF-8", "kind": "refused"})
            return
        try:
            body = state.run(sql, self.headers.get(ANALYST_TOKEN_HEADER))
        except QueryRefused as exc:
            self._json(400, {"error": str(exc), "kind": "refused"})
            return
        except PlantstreamError as exc:  # ClickHouse errors: tell the analyst, keep serving
            self._json(400, {"error": str(exc), "kind": "failed"})
            return
        except Exception as exc:  # anything else: say so, keep serving
            log.exception("query endpoint failed")
            self._json(500, {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "kind": "failed"})
            return
        self.send_response(200)
        self.send_header("Content-Type", ARROW_STREAM)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
