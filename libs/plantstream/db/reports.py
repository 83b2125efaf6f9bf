"""The canned analyst reports, as SQL over the archive tables.

Reading volumes come from the rollups (``readings_1h`` / ``readings_1m``), never from raw
rows, so the reports stay fast however many readings are kept; only ``trend`` with
``every='raw'`` reads ``readings``, and then for one sensor's key range.
"""

from __future__ import annotations

import datetime as dt

from plantstream.errors import PlantstreamError


class ReportError(PlantstreamError):
    """A report option is malformed."""


def lit(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ts_lit(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return f"toDateTime64({lit(value.isoformat(sep=' '))}, 6, 'UTC')"


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (``2025-01-31``, ``2025-01-31T08:00``, with or without offset; UTC if none)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{text!r} is not a time; use ISO 8601 like 2025-01-31T08:00 (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# A re-baseline event says the machine's normal moved; it is not an anomaly to count or rank.
NOT_REBASELINE = "kind != 'rebaseline'"


def _where(*conditions: str | None) -> str:
    kept = [c for c in conditions if c]
    return ("WHERE " + " AND ".join(kept)) if kept else ""


def _tenant(tenant: str | None, column: str = "tenant") -> str | None:
    return f"{column} = {lit(tenant)}" if tenant else None


def _hours(hours: int) -> int:
    if hours < 1:
        raise ReportError("--hours must be at least 1")
    return hours


def health(tenant: str | None = None, hours: int = 24) -> str:
    """Per machine: last reading, readings and sensors reporting in the window, anomaly
    events in the window, open (unresolved) alerts now."""
    h = _hours(hours)
    since = f"now() - INTERVAL {h} HOUR"
    return f"""
WITH
  r AS (SELECT tenant, site, machine, max(last_ts) AS last_seen,
               sumIf(readings, hour >= toStartOfHour({since})) AS readings,
               uniqExactIf(sensor, hour >= toStartOfHour({since})) AS sensors
        FROM readings_1h {_where(_tenant(tenant))} GROUP BY tenant, site, machine),
  a AS (SELECT tenant, site, machine, count() AS anomalies, max(score) AS max_score
        FROM anomalies {_where(_tenant(tenant), f"ts >= {since}", NOT_REBASELINE)}
        GROUP BY tenant, site, machine),
  s AS (SELECT tenant, site, machine, countIf(current_state != 'resolved') AS open_alerts,
               countIf(current_state != 'resolved' AND current_severity = 'critical') AS critical_open
        FROM (SELECT alert_id, tenant, site, machine,  -- one machine per alert id: grouped, not any()
                     argMax(state, revision) AS current_state, argMax(severity, revision) AS current_severity
              FROM alerts {_where(_tenant(tenant))} GROUP BY alert_id, tenant, site, machine)
        GROUP BY tenant, site, machine)
SELECT r.tenant AS tenant, r.site AS site, r.machine AS machine, r.last_seen AS last_seen,
       r.readings AS readings_{h}h, r.sensors AS sensors_{h}h,
       a.anomalies AS anomalies_{h}h, round(a.max_score, 3) AS max_score_{h}h,
       s.open_alerts AS open_alerts, s.critical_open AS critical_open
FROM r LEFT JOIN a ON a.tenant = r.tenant AND a.site = r.site AND a.machine = r.machine
       LEFT JOIN s ON s.tenant = r.tenant AND s.site = r.site AND s.machine = r.machine
ORDER BY critical_open DESC, open_alerts DESC, anomalies_{h}h DESC, tenant, site, machine"""


def anomalous_sensors(tenant: str | None = None, hours: int = 168, limit: int = 20) -> str:
    """Sensors ranked by their summed share of anomaly scores in the window."""
    h = _hours(hours)
    return f"""
SELECT tenant, site, machine, sensor, count() AS events, round(sum(share), 2) AS score_share,
       round(max(score), 3) AS max_score, max(ts) AS last_event
FROM anomalies ARRAY JOIN sensors AS sensor, shares AS share
{_where(_tenant(tenant), f"ts >= now() - INTERVAL {h} HOUR", NOT_REBASELINE)}
GROUP BY tenant, site, machine, sensor
ORDER BY score_share DESC, events DESC
LIMIT {max(1, int(limit))}"""


def alerts(tenant: str | None = None, hours: int = 720) -> str:
    """Alerts raised in the window by severity: counts by current state, and mean minutes
    from raising to the first acknowledgement and to resolution (from the revisions)."""
    h = _hours(hours)
    return f"""
SELECT current_severity AS severity, count() AS alerts,
       countIf(current_state = 'open') AS open, countIf(current_state = 'acknowledged') AS acknowledged,
       countIf(current_state = 'resolved') AS resolved,
       round(avgIfOrNull(dateDiff('second', raised_at, acked_at), was_acked) / 60, 1) AS mtta_minutes,
       round(avgIfOrNull(dateDiff('second', raised_at, resolved_at), was_resolved) / 60, 1) AS mttr_minutes
FROM (SELECT alert_id, argMax(state, revision) AS current_state,
             argMax(severity, revision) AS current_severity, min(updated_at) AS raised_at,
             minIf(updated_at, state = 'acknowledged') AS acked_at,
             countIf(state = 'acknowledged') > 0 AS was_acked,
             minIf(updated_at, state = 'resolved') AS resolved_at,
             countIf(state = 'resolved') > 0 AS was_resolved
      FROM alerts {_where(_tenant(tenant))} GROUP BY alert_id
      HAVING raised_at >= now() - INTERVAL {h} HOUR)
GROUP BY severity
ORDER BY indexOf(['critical', 'warning', 'info'], severity)"""


def data_quality(tenant: str | None = None, hours: int = 168) -> str:
    """Dead letters in the window by the stage that rejected them, the reason and the topic
    they came from."""
    h = _hours(hours)
    return f"""
SELECT stage, reason, source_topic, count() AS dead_letters,
       uniqExact(tenant, site, machine) AS machines, min(rejected_at) AS first, max(rejected_at) AS last
FROM rejected {_where(_tenant(tenant), f"rejected_at >= now() - INTERVAL {h} HOUR")}
GROUP BY stage, reason, source_topic
ORDER BY dead_letters DESC, stage, reason"""


def trend(machine: str, sensor: str, start: dt.datetime, end: dt.datetime, every: str = "1m",
          tenant: str | None = None, site: str | None = None) -> str:
    """One sensor over [start, end): per-minute or per-hour min/avg/max from the rollups,
    or every raw reading."""
    if end <= start:
        raise ReportError("--to must be after --from")
    keys = [_tenant(tenant), f"site = {lit(site)}" if site else None,
            f"machine = {lit(machine)}", f"sensor = {lit(sensor)}"]
    if every == "raw":
        return f"""
SELECT tenant, site, machine, sensor, ts AS time, value, unit, quality
FROM readings {_where(*keys, f"ts >= {ts_lit(start)}", f"ts < {ts_lit(end)}")}
ORDER BY tenant, site, time"""
    if every not in ("1m", "1h"):
        raise ReportError(f"--every {every!r}: use raw, 1m or 1h")
    table, col = ("readings_1m", "minute") if every == "1m" else ("readings_1h", "hour")
    return f"""
SELECT tenant, site, machine, sensor, {col} AS time, sum(readings) AS samples,
       min(value_min) AS low, sum(value_sum) / samples AS mean, max(value_max) AS high
FROM {table} {_where(*keys, f"{col} >= toStartOf{'Minute' if every == '1m' else 'Hour'}({ts_lit(start)})",
                     f"{col} < {ts_lit(end)}")}
GROUP BY tenant, site, machine, sensor, time
ORDER BY tenant, site, time"""


REPORTS = {
    "health": health,
    "anomalous-sensors": anomalous_sensors,
    "alerts": alerts,
    "data-quality": data_quality,
    "trend": trend,
}
