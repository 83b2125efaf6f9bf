"""Versioned DDL migrations, applied in order and recorded, so applying twice is a no-op.

Each ``migrations/NNNN_name.sql`` holds statements separated by ``;`` lines. A version is
recorded in ``schema_migrations`` only after all its statements ran; statements use
``IF NOT EXISTS`` so a half-applied version can be re-run.
"""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from plantstream.errors import ConfigError

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


# table -> the expression its TTL counts from (as in the migrations)
RETENTION_TTL = {
    "readings": "toDateTime(ts)",
    "readings_1m": "toDateTime(minute)",
    "readings_1h": "toDateTime(hour)",
    "rejected": "toDateTime(rejected_at)",
    "anomalies": "toDateTime(ts)",
    "alerts": "toDateTime(updated_at)",
    "notifications": "toDateTime(attempted_at)",
}


def apply_retention(client: Client, ttl_days: int) -> list[str]:
    """Make every archive table keep rows ``ttl_days`` days; return the tables changed.

    Migrations bake the retention in force when a table was created; this re-applies the
    current setting, so changing PLANTSTREAM_CLICKHOUSE_TTL_DAYS takes effect at the next
    start of the archival service (expired rows go at the next merge)."""
    if ttl_days < 1:
        raise ConfigError(f"PLANTSTREAM_CLICKHOUSE_TTL_DAYS={ttl_days}: retention must be at least 1 day")
    engines = dict(client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()").result_rows)
    changed = []
    for table, expr in RETENTION_TTL.items():
        engine = engines.get(table)
        if engine is None or f"toIntervalDay({ttl_days})" in engine:
            continue
        client.command(f"ALTER TABLE {table} MODIFY TTL {expr} + INTERVAL {ttl_days} DAY",
                       settings={"materialize_ttl_after_modify": 0})
        changed.append(table)
    return changed
