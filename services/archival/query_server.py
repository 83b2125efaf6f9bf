"""Read-only SQL over loopback HTTP, served by the archival service in embedded mode.

The embedded engine is single-process, so while archival holds the data directory this is
how ``plantstream sql`` and ``plantstream report`` reach it. Queries use their own engine
handle whose session is ``readonly = 2`` (writes and DDL refused by ClickHouse), behind the
same gate the CLI applies; a random token in ``$PLANTSTREAM_HOME/run`` (mode 0600) keeps
other local users out. Results go back as an Arrow IPC stream.

    GET  /health  -> {"service": "archival", "clickhouse_url": ...}
    POST /query   (body: SQL, header X-Plantstream-Token) -> Arrow stream, or 400/403 JSON
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from plantstream.db.query import ARROW_STREAM, TOKEN_HEADER, port_file, token_file
from plantstream.db.readonly import QueryRefused, check_read_only
from plantstream.settings import Settings

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 1 << 20


class QueryServer:
    """Owns the HTTP server thread, the port and token files, and the read-only handle."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.token = secrets.token_hex(16)
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> int:
        self.client.command("SET readonly = 2")
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

    def run(self, sql: str) -> bytes:
        statement = check_read_only(sql)
        table = self.client.query_arrow(statement, use_strings=True)
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
        sql = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = state.run(sql)
        except QueryRefused as exc:
            self._json(400, {"error": str(exc), "kind": "refused"})
            return
        except Exception as exc:  # ClickHouse errors: tell the analyst, keep serving
            text = str(exc).strip().splitlines()
            self._json(400, {"error": text[0] if text else type(exc).__name__, "kind": "failed"})
            return
        self.send_response(200)
        self.send_header("Content-Type", ARROW_STREAM)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
