"""Where analyst SQL runs and as whom, decided once so every command shares one result path (Arrow).

- Server DSN (``http://...``): the server, as the read-only analyst user
  (``PLANTSTREAM_CLICKHOUSE_ANALYST_USER``), never with the writer's credentials in the DSN.
- Embedded DSN and the archival service running: through its loopback query endpoint,
  because only one process may open an embedded data directory.
- Embedded DSN and nothing running: open the directory here.

Either way the query runs on an :class:`~plantstream.db.readonly.AnalystSession`
(``readonly = 1`` and limits set on the engine session, the statement parsed by ClickHouse).

Analyst tokens (``PLANTSTREAM_ANALYST_TOKENS_FILE``) map a token to the tenant whose rows
it sees, or to ``"*"`` for every tenant. Without a tokens file the setup is single-tenant and
queries see everything (the data directory's file permissions are the boundary).
"""

from __future__ import annotations

import hmac
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import yaml

from plantstream.db.clickhouse import connect, embedded_path, redacted
from plantstream.db.migrate import migrate
from plantstream.db.readonly import AnalystSession, QueryFailed, QueryRefused, Scope, engine_message
from plantstream.errors import ConfigError, PlantstreamError
from plantstream.settings import Settings

ARROW_STREAM = "application/vnd.apache.arrow.stream"
TOKEN_HEADER = "X-Plantstream-Token"
ANALYST_TOKEN_HEADER = "X-Plantstream-Analyst-Token"
ALL_TENANTS = "*"
MIN_TOKEN_CHARS = 16

__all__ = ["QueryFailed", "QueryRefused", "Scope", "open_target", "scope_for_token"]


def sql_str(value: str) -> str:
    """A ClickHouse string literal: backslashes and quotes escaped, so any id is just data.

    >>> sql_str("it's")
    "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def port_file(settings: Settings) -> Path:
    return settings.home / "run" / "archival-query.port"


def token_file(settings: Settings) -> Path:
    return settings.home / "run" / "archival-query.token"


def load_tokens(path: str) -> dict[str, str]:
    """``tokens: {TOKEN: tenant | "*"}`` from the analysts' YAML file, checked."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"PLANTSTREAM_ANALYST_TOKENS_FILE={path}: cannot read it ({exc})") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict) or not tokens:
        raise ConfigError(f"{path}: expected `tokens:` mapping each analyst token to a tenant (or \"*\")")
    out: dict[str, str] = {}
    for token, tenant in tokens.items():
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{path}: every token must be a string of {MIN_TOKEN_CHARS}+ characters")
        if not isinstance(tenant, str) or not tenant:
            raise ConfigError(f"{path}: the token ending ...{token[-4:]} needs a tenant id or \"*\"")
        out[token] = tenant
    return out


def scope_for_token(settings: Settings, token: str | None) -> Scope:
    """Whose rows ``token`` may see under ``settings``' tokens file (compared in constant time)."""
    if not settings.analyst_tokens_file:
        return Scope(None)
    tokens = load_tokens(settings.analyst_tokens_file)
    if not token:
        raise QueryRefused("this archive needs an analyst token: set PLANTSTREAM_ANALYST_TOKEN "
                           "(the operator issues them in PLANTSTREAM_ANALYST_TOKENS_FILE)")
    tenant = None
    for known, who in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            tenant = who
    if tenant is None:
        raise QueryRefused("unknown analyst token (PLANTSTREAM_ANALYST_TOKEN); ask the operator for yours")
    return Scope(None if tenant == ALL_TENANTS else tenant)


class QueryTarget(Protocol):
    description: str

    def arrow(self, sql: str) -> pa.Table: ...

    def close(self) -> None: ...


@dataclass
class SessionTarget:
    """An analyst session of this process (server, or embedded opened here)."""

    session: AnalystSession
    description: str

    def arrow(self, sql: str) -> pa.Table:
        return self.session.arrow(sql)

    def close(self) -> None:
        self.session.close()


@dataclass
class EndpointTarget:
    """The archival service's read-only endpoint on loopback."""

    url: str
    token: str
    description: str
    analyst_token: str = ""
    timeout: float = 330.0  # a little over the engine's own max_execution_time

    def arrow(self, sql: str) -> pa.Table:
        headers = {TOKEN_HEADER: self.token, "Accept": ARROW_STREAM,
                   "Content-Type": "text/plain; charset=utf-8"}
        if self.analyst_token:
            headers[ANALYST_TOKEN_HEADER] = self.analyst_token
        req = urllib.request.Request(f"{self.url}/query", data=sql.encode(), method="POST", headers=headers)
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
    return EndpointTarget(url, token, f"archival service on {url} ({settings.clickhouse_url})",
                          analyst_token=settings.analyst_token)


def analyst_dsn(settings: Settings) -> str:
    """The server DSN with the analyst user's credentials in place of the writer's."""
    if not settings.clickhouse_analyst_user:
        raise ConfigError(
            "set PLANTSTREAM_CLICKHOUSE_ANALYST_USER (and _PASSWORD) to a read-only ClickHouse user for "
            "analyst SQL; the writer's credentials in PLANTSTREAM_CLICKHOUSE_URL are never used for it")
    parts = urllib.parse.urlsplit(settings.clickhouse_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = urllib.parse.quote(settings.clickhouse_analyst_user, safe="")
    if settings.clickhouse_analyst_password:
        userinfo += ":" + urllib.parse.quote(settings.clickhouse_analyst_password, safe="")
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_target(settings: Settings) -> QueryTarget:
    """The place to run analyst SQL for ``settings`` (see the module doc)."""
    path = embedded_path(settings.clickhouse_url)
    if path is None:
        if settings.clickhouse_url.startswith("chdb://"):
            raise PlantstreamError("an in-memory ClickHouse (chdb://memory) holds no archive to query")
        scope = scope_for_token(settings, settings.analyst_token)
        if scope.tenant is not None:
            raise QueryRefused("tenant-scoped analyst tokens apply to the embedded archive; on a ClickHouse "
                               "server give each tenant its own analyst user with a row policy (README)")
        dsn = analyst_dsn(settings)
        where = redacted(dsn)
        try:
            session = AnalystSession(connect(dsn), scope, lock=False)
        except PlantstreamError:
            raise
        except Exception as exc:
            raise QueryFailed(engine_message(exc)) from exc
        return SessionTarget(session, f"ClickHouse server {where} as {settings.clickhouse_analyst_user}")
    endpoint = find_endpoint(settings)
    if endpoint is not None:
        return endpoint
    scope = scope_for_token(settings, settings.analyst_token)
    client = connect(settings.clickhouse_url)
    migrate(client, ttl_days=settings.clickhouse_ttl_days)  # a fresh directory gets the (empty) tables
    return SessionTarget(AnalystSession(client, scope),
                         f"embedded ClickHouse {path} ({scope.describe()})")
