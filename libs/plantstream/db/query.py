"""Where analyst SQL runs, decided once so every command shares one result path (Arrow).

- Server DSN (``http://...``): straight to ClickHouse with clickhouse-connect.
- Embedded DSN and the archival service running: through its loopback query endpoint,
  because only one process may open an embedded data directory.
- Embedded DSN and nothing running: open the directory here, read-only.

Every path passes the same read-only gate (:func:`plantstream.db.readonly.check_read_only`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from plantstream.db.clickhouse import connect, embedded_path
from plantstream.db.migrate import migrate
from plantstream.db.readonly import QueryRefused, check_read_only
from plantstream.errors import PlantstreamError
from plantstream.settings import Settings

ARROW_STREAM = "application/vnd.apache.arrow.stream"
TOKEN_HEADER = "X-Plantstream-Token"


class QueryFailed(PlantstreamError):
    """ClickHouse could not run the query (syntax, unknown table, ...)."""


def port_file(settings: Settings) -> Path:
    return settings.home / "run" / "archival-query.port"


def token_file(settings: Settings) -> Path:
    return settings.home / "run" / "archival-query.token"


class QueryTarget(Protocol):
    description: str

    def arrow(self, sql: str) -> pa.Table: ...

    def close(self) -> None: ...


@dataclass
class ClientTarget:
    """A clickhouse-connect client of this process (server, or embedded opened here)."""

    client: Client
    description: str

    def arrow(self, sql: str) -> pa.Table:
        statement = check_read_only(sql)
        try:
            return self.client.query_arrow(statement, use_strings=True)
        except Exception as exc:  # clickhouse-connect's DatabaseError and friends
            raise QueryFailed(_first_line(exc)) from exc

    def close(self) -> None:
        self.client.close()


@dataclass
class EndpointTarget:
    """The archival service's read-only endpoint on loopback."""

    url: str
    token: str
    description: str
    timeout: float = 300.0

    def arrow(self, sql: str) -> pa.Table:
        statement = check_read_only(sql)
        req = urllib.request.Request(
            f"{self.url}/query", data=statement.encode(), method="POST",
            headers={TOKEN_HEADER: self.token, "Accept": ARROW_STREAM, "Content-Type": "text/plain"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise _endpoint_error(exc) from None
        except OSError as exc:
            raise QueryFailed(f"the archival service at {self.url} did not answer ({exc}); "
                              "is it still running? (`plantstream services status`)") from exc
        return pa.ipc.open_stream(body).read_all()

    def close(self) -> None:
        pass


def _endpoint_error(exc: urllib.error.HTTPError) -> PlantstreamError:
    try:
        answer = json.loads(exc.read())
        message, kind = answer["error"], answer.get("kind")
    except (ValueError, KeyError, TypeError):
        message, kind = f"HTTP {exc.code} {exc.reason}", None
    return QueryRefused(message) if kind == "refused" else QueryFailed(message)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def find_endpoint(settings: Settings, timeout: float = 2.0) -> EndpointTarget | None:
    """The running archival service's endpoint for this data directory, if it answers."""
    try:
        port = int(port_file(settings).read_text().strip())
        token = token_file(settings).read_text().strip()
    except (OSError, ValueError):
        return None
    url = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            health = json.loads(resp.read())
    except (OSError, ValueError):
        return None  # a stale port file left by a killed service
    if health.get("clickhouse_url") != settings.clickhouse_url:
        return None
    return EndpointTarget(url, token, f"archival service on {url} ({settings.clickhouse_url})")


def open_target(settings: Settings) -> QueryTarget:
    """The place to run analyst SQL for ``settings`` (see the module doc)."""
    path = embedded_path(settings.clickhouse_url)
    if path is None:
        if settings.clickhouse_url.startswith("chdb://"):
            raise PlantstreamError("an in-memory ClickHouse (chdb://memory) holds no archive to query")
        where = _redact(settings.clickhouse_url)
        return ClientTarget(connect(settings.clickhouse_url), f"ClickHouse server {where}")
    endpoint = find_endpoint(settings)
    if endpoint is not None:
        return endpoint
    client = connect(settings.clickhouse_url)
    migrate(client, ttl_days=settings.clickhouse_ttl_days)  # a fresh directory gets the (empty) tables
    client.command("SET readonly = 2")
    return ClientTarget(client, f"embedded ClickHouse {path}")


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
