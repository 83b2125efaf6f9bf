"""ClickHouse access through clickhouse-connect, embedded (chDB) or server, and migrations."""

from plantstream.db.clickhouse import connect, embedded_path
from plantstream.db.migrate import applied_versions, apply_retention, migrate

__all__ = ["connect", "embedded_path", "migrate", "applied_versions", "apply_retention"]
