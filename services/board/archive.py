"""What the board reads from ClickHouse, always for one tenant.

Queries go through the same read-only path as analyst SQL (``plantstream.db.query``): a
server DSN is queried directly; in embedded mode the board asks the archival service's
loopback endpoint and never opens the data directory itself (that would lock archival out).
Every value put into SQL passes :func:`sql_str` or is an integer the board computed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from plantstream.avro import AvroCodec
from plantstream.db.clickhouse import embedded_path
from plantstream.db.query import QueryTarget, find_endpoint, open_target, sql_str
from plantstream.errors import DecodeError, PlantstreamError
from plantstream.settings import Settings

log = logging.getLogger("board.archive")

ALERT_COLUMNS = ("alert_id, revision, tenant, site, machine, sensors, rule, severity, state, title, "
                 "first_seen, last_seen, occurrences, escalation_level, evidence, recommended_action, "
                 "actor, note, silenced_until, updated_at")
TIME_FIELDS = ("first_seen", "last_seen", "silenced_until", "updated_at")


class ArchiveUnavailable(PlantstreamError):
    """The archive cannot be reached right now (archival stopped, server down)."""


def _between(start_us: int, end_us: int) -> str:
    return (f"ts BETWEEN fromUnixTimestamp64Micro(toInt64({int(start_us)})) "
            f"AND fromUnixTimestamp64Micro(toInt64({int(end_us)}))")


def _us(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp()) * 1_000_000 + value.microsecond
    return int(value)


def alert_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """An archived alert row in the shape of the Avro alert_event."""
    a = dict(row)
    for name in TIME_FIELDS:
        a[name] = _us(a.get(name))
    ev = a.get("evidence") or {}
    a["evidence"] = dict(ev) if not isinstance(ev, dict) else ev
    a["sensors"] = list(a.get("sensors") or [])
    return a


class Archive:
    """Read-only queries of one board process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedded = embedded_path(settings.clickhouse_url) is not None
        self._server: QueryTarget | None = None
        self._lock = threading.Lock()
        self.codec = AvroCodec()

    def _target(self) -> QueryTarget:
        if self._embedded:
            endpoint = find_endpoint(self.settings)
            if endpoint is None:
                raise ArchiveUnavailable(
                    "the archive is not reachable: in embedded mode the board reads through the archival "
                    "service, which is not running (`plantstream services start archival`)")
            return endpoint
        with self._lock:
            if self._server is None:
                self._server = open_target(self.settings)
            return self._server

    def rows(self, sql: str) -> list[dict[str, Any]]:
        try:
            return self._target().arrow(sql).to_pylist()
        except ArchiveUnavailable:
            raise
        except PlantstreamError as exc:
            log.warning("archive query failed", extra={"error": str(exc)})
            raise ArchiveUnavailable(f"the archive did not answer: {exc}") from exc

    def latest_alerts(self, tenant: str) -> list[dict[str, Any]]:
        """The highest archived revision of every alert of ``tenant``."""
        return [alert_from_row(r) for r in self.rows(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant = {sql_str(tenant)} "
            "ORDER BY alert_id, revision DESC LIMIT 1 BY alert_id")]

    def revisions(self, tenant: str, alert_id: str) -> list[dict[str, Any]]:
        return [alert_from_row(r) for r in self.rows(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant = {sql_str(tenant)} "
            f"AND alert_id = {sql_str(alert_id)} ORDER BY revision LIMIT 1 BY revision")]

    def refused_commands(self, tenant: str, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """Commands for this alert the maintenance service refused (archived dead letters); the
        original bytes are decoded as Avro data, never executed."""
        rows = self.rows(
            "SELECT reason, detail, original, rejected_at FROM rejected "
            f"WHERE tenant = {sql_str(tenant)} AND site = {sql_str(alert['site'])} "
            f"AND machine = {sql_str(alert['machine'])} AND stage = 'maintenance' "
            "AND startsWith(reason, 'invalid_command') ORDER BY rejected_at LIMIT 200")
        out = []
        for r in rows:
            try:
                cmd = self.codec.decode(r["original"], "alert_command")
            except (DecodeError, TypeError):
                continue
            if cmd["alert_id"] == alert["alert_id"]:
                out.append({"action": cmd["action"], "actor": cmd["actor"], "reason": cmd["reason"],
                            "issued_at": cmd["issued_at"], "refused": r["detail"] or r["reason"]})
        return out

    def anomalies(self, tenant: str, site: str, machine: str, start_us: int, end_us: int) -> list[dict]:
        rows = self.rows(
            "SELECT event_id, max(ts) AS last_ts, min(window_start) AS first_ts, max(score) AS top_score, "
            "any(threshold) AS top_threshold, any(kind) AS any_kind, argMax(sensors, ts) AS last_sensors, "
            "argMax(shares, ts) AS last_shares, count() AS revisions FROM anomalies "
            f"WHERE tenant = {sql_str(tenant)} AND site = {sql_str(site)} AND machine = {sql_str(machine)} "
            f"AND {_between(start_us, end_us)} GROUP BY event_id ORDER BY last_ts DESC LIMIT 50")
        return [{"event_id": r["event_id"], "ts": _us(r["last_ts"]), "window_start": _us(r["first_ts"]),
                 "score": r["top_score"], "threshold": r["top_threshold"], "kind": r["any_kind"],
                 "sensors": list(r["last_sensors"]), "shares": list(r["last_shares"]),
                 "revisions": r["revisions"]} for r in rows]

    def trend(self, tenant: str, site: str, machine: str, sensors: list[str],
              start_us: int, end_us: int, step_us: int) -> list[dict[str, Any]]:
        """Per sensor: unit and [bucket start ms, mean, min, max] buckets of ``step_us``."""
        if not sensors:
            return []
        names = ", ".join(sql_str(s) for s in sensors)
        rows = self.rows(
            "SELECT sensor, any(unit) AS unit, "
            f"intDiv(toUnixTimestamp64Micro(ts), {int(step_us)}) AS bucket, "
            "avg(value) AS mean, min(value) AS lo, max(value) AS hi FROM readings "
            f"WHERE tenant = {sql_str(tenant)} AND site = {sql_str(site)} AND machine = {sql_str(machine)} "
            f"AND sensor IN ({names}) AND {_between(start_us, end_us)} "
            "GROUP BY sensor, bucket ORDER BY sensor, bucket")
        series: dict[str, dict[str, Any]] = {}
        for r in rows:
            s = series.setdefault(r["sensor"], {"sensor": r["sensor"], "unit": r["unit"], "points": []})
            s["points"].append([r["bucket"] * step_us // 1000, r["mean"], r["lo"], r["hi"]])
        return list(series.values())

    def machines(self, tenant: str) -> list[dict[str, Any]]:
        """Every machine of the tenant the archive knows: last reading and anomaly episodes in the
        last 24 h."""
        t = sql_str(tenant)
        rows = self.rows(
            "SELECT site, machine, max(last_seen) AS last_seen, sum(episodes) AS episodes FROM ("
            " SELECT site, machine, max(last_ts) AS last_seen, 0 AS episodes"
            f" FROM readings_1m WHERE tenant = {t}"
            " GROUP BY site, machine"
            " UNION ALL"
            " SELECT site, machine, toDateTime64(0, 6, 'UTC') AS last_seen, uniqExact(event_id) AS episodes"
            f" FROM anomalies WHERE tenant = {t} AND ts >= now64(6) - INTERVAL 1 DAY AND kind != 'rebaseline'"
            " GROUP BY site, machine"
            ") GROUP BY site, machine ORDER BY site, machine")
        for r in rows:
            seen = _us(r["last_seen"])
            r["last_seen"] = seen if seen else None
            r["episodes"] = int(r["episodes"])
        return rows
