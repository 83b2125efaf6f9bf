"""Versioned DDL migrations, applied in order and recorded, so applying twice is a no-op.

Each ``migrations/NNNN_name.sql`` holds statements separated by ``;`` lines. A version is
recorded in ``schema_migrations`` only after all its statements ran; statements use
``IF NOT EXISTS`` so a half-applied version can be re-run.
"""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version
"""


def available(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if m:
            found.append((int(m.group(1)), m.group(2), path))
    return found


def statements(sql: str) -> list[str]:
    sql = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def applied_versions(client: Client) -> set[int]:
    client.command(_LEDGER)
    return {row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows}


def migrate(client: Client, directory: Path = MIGRATIONS_DIR, ttl_days: int | None = None) -> list[str]:
    """Apply the migrations not yet applied; return their names. ``{ttl_days}`` in a
    migration is replaced by the retention setting."""
    done = applied_versions(client)
    ran = []
    for version, name, path in available(directory):
        if version in done:
            continue
        sql = path.read_text().replace("{ttl_days}", str(ttl_days or 3650))
        for stmt in statements(sql):
            client.command(stmt)
        client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
        ran.append(f"{version:04d}_{name}")
    return ran
