"""One way to reach ClickHouse: ``PLANTSTREAM_CLICKHOUSE_URL``.

``chdb:///dir`` runs the embedded engine in this process (only one process may open a data
directory at a time); ``http(s)://user:pass@host:8123/db`` reaches a server, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from plantstream.errors import ConfigError, PlantstreamError


def embedded_path(url: str) -> Path | None:
    """The data directory of an embedded DSN, or None for a server DSN."""
    if url.startswith("chdb://"):
        rest = url[len("chdb://"):]
        if rest.startswith("memory"):
            return None
        return Path(rest.split("?", 1)[0])
    return None


def redacted(url: str) -> str:
    """``url`` fit for a log line or a message: the user and password replaced by ``***``."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def connect(url: str, **kwargs: Any) -> Client:
    """A clickhouse-connect client for ``url``; creates the embedded data directory."""
    if not url.startswith(("chdb://", "http://", "https://")):
        raise ConfigError(
            f"PLANTSTREAM_CLICKHOUSE_URL={redacted(url)!r}: use chdb:///path/to/dir (embedded) "
            "or http://host:8123 (server)"
        )
    path = embedded_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=url, **kwargs)
    except Exception as exc:
        if "Cannot lock file" in str(exc) or "status" in str(exc) and path is not None:
            raise PlantstreamError(
                f"the embedded ClickHouse at {path} is open in another process (the archival "
                "service?); query through it with `plantstream sql`, or stop it first"
            ) from exc
        secret = url.split("://", 1)[-1].split("@", 1)[0] if "@" in url else None
        detail = str(exc).replace(secret, "***") if secret else str(exc)
        raise PlantstreamError(f"cannot connect to ClickHouse at {redacted(url)}: {detail}") from None
