"""The end-to-end demo behind ``make demo``: the five services as separate processes on the
real broker and ClickHouse, a simulated factory with injected faults for about a minute,
then a summary of what every stage did. The stack stays up for exploration afterwards."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plantstream.assets import publish_assets
from plantstream.errors import PlantstreamError
from plantstream.gateway.sender import SendReport, send_batches
from plantstream.gateway.simulator import DEFAULT_SITE, DEFAULT_TENANT, Factory
from plantstream.gateway.truth import FaultWindow
from plantstream.kafka import check_broker, create_topics
from plantstream.kafkaauth import add_gateway, secured
from plantstream.lag import group_lags, unread_messages
from plantstream.settings import Settings
from plantstream.supervisor import APPS, SERVICES, start, status

Echo = Callable[[str], None]


@dataclass
class DemoRun:
    """What the demo sent, and the ground truth to compare the alerts with."""

    report: SendReport
    truth: list[FaultWindow]
    started_us: int  # the factory's first sample time
    summary: dict[str, Any] = field(default_factory=dict)
    wall_started_us: int = 0  # when this run began sending (alerts of earlier runs are older)
    site: str = DEFAULT_SITE


def start_stack(settings: Settings, echo: Echo) -> None:
    """Topics, then the six services (archival migrates ClickHouse on start) and the board."""
    check_broker(settings)
    created = [t for t, state in create_topics(settings).items() if state == "created"]
    echo(f"topics: {len(created)} created" if created else "topics: all present")
    for name in SERVICES + APPS:
        pid = start(settings, name)
        echo(f"service {name}: pid {pid}")
    wait_for_members(settings, echo)


DEMO_USER = "demo"


def board_login(settings: Settings, tenant: str = DEFAULT_TENANT) -> tuple[str, str, str]:
    """The board's URL and a login for the demo's tenant: user ``demo`` with a random password,
    made on the first demo and kept (mode 0600) next to the user file, so every later demo can
    say it again (the user file itself holds only the salted hash)."""
    from board.users import add_user

    users = settings.board_users or settings.home / "board-users.yaml"
    secret = users.with_name("board-demo-password")
    if not secret.exists():
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(12))
    password = secret.read_text().strip()
    add_user(users, DEMO_USER, tenant, password)
    host, _, port = settings.board_address.rpartition(":")
    return f"http://{host or '127.0.0.1'}:{port}/", DEMO_USER, password


def wait_for_members(settings: Settings, echo: Echo, timeout: float = 120.0) -> None:
    """Return when every service's consumer group has a member (the service is consuming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in status(settings) if not p.alive]
        if dead:
            raise PlantstreamError(f"service {dead[0].service} exited during start-up; see {dead[0].log}")
        waiting = [g.service for g in group_lags(settings, SERVICES) if g.members == 0]
        if not waiting:
            echo("services: all consuming")
            return
        time.sleep(1.0)
    raise PlantstreamError(f"services not consuming after {timeout:.0f}s: {', '.join(waiting)}; "
                           f"see logs in {settings.home / 'logs'}")


def free_site(settings: Settings, start_us: int, tenant: str = DEFAULT_TENANT) -> str:
    """The demo's site: ``plant-1``, or the first ``plant-N`` with no archived reading at or after
    ``start_us``. A demo re-run within its hour of factory time would overlap the last run's
    sample times, and validation rejects every reading at or before a sensor's last accepted
    one (out_of_order): the new run's factory gets a site of its own instead."""
    from plantstream.db.query import open_target, sql_str

    target = open_target(settings)
    try:
        rows = target.arrow(f"SELECT site, max(ts) AS last FROM readings WHERE tenant = {sql_str(tenant)} "
                            "GROUP BY site").to_pylist()
    finally:
        target.close()
    busy = {r["site"] for r in rows if r["last"] is not None and _micros(r["last"]) >= start_us}
    n = 1
    while f"plant-{n}" in busy:
        n += 1
    return f"plant-{n}"


def _micros(value: Any) -> int:
    return int(value.timestamp() * 1_000_000) if hasattr(value, "timestamp") else int(value)


def sent_on_wall_clock(timed: Iterable[tuple[dict[str, Any], float]], start_us: int,
                       speedup: float) -> Iterator[tuple[dict[str, Any], float]]:
    """Pace factory batches ``speedup`` times faster than factory time, stamping each batch's
    ``sent_at`` with the wall-clock time it is due to be sent plus the simulated gateway clock's
    offset (what a clock_skew fault sets). The readings are an hour of history squeezed into a
    minute, but the gateways send now: clock skew is judged as for live gateways."""
    wall0 = time.time_ns() // 1000
    for batch, due in timed:
        offset = batch["sent_at"] - (start_us + round(due * 1_000_000))
        batch["sent_at"] = wall0 + round(due / speedup * 1_000_000) + offset
        yield batch, due / speedup


def simulate(settings: Settings, echo: Echo, *, machines: int, faulty: int, seconds: float,
             rate: float, seed: int) -> DemoRun:
    """Send ``seconds`` of wall-clock time at ``rate`` readings/s from a factory sampled once a
    second on its own clock, so a minute shows an hour or more of factory life: enough for
    faults to develop, detectors to warm up and trends to form. The factory's clock ends at
    now, so every reading carries a realistic time stamp."""
    wall_started_us = int(time.time() * 1e6)
    probe = Factory.build(machines=machines, seed=seed)
    speedup = max(rate / probe.sensors, 1.0)  # factory seconds per wall second
    horizon = seconds * speedup
    site = free_site(settings, wall_started_us - int(horizon * 1e6))
    if site != DEFAULT_SITE:
        echo(f"demo: an earlier run's readings overlap this run's factory time; this one is site {site}")
    factory = Factory.build(machines=machines, seed=seed, faulty=faulty, horizon=horizon, interval=1.0,
                            warm_start=True, site=site)
    publish_assets(settings, factory.assets())
    echo(f"assets: {machines} machines published; {horizon / 60:.0f} min of factory time in {seconds:.0f} s; "
         "faults injected: " + ", ".join(f"{w.machine} {w.kind}" for w in factory.ground_truth()))
    paced = sent_on_wall_clock(factory.timed_batches(horizon, batch_size=100), factory.start_us, speedup)
    # the factory's gateway logs in as a gateway, as a real one would: it may write batches only
    gateway = add_gateway(settings, "demo", DEFAULT_TENANT) if secured(settings) else settings
    report = send_batches(gateway, paced, progress=lambda r: echo(f"gateway: {r.line()}"),
                          progress_every=10.0)
    echo(f"gateway: done, {report.line()}")
    return DemoRun(report, factory.ground_truth(), factory.start_us, wall_started_us=wall_started_us,
                   site=site)


def drain(settings: Settings, echo: Echo, timeout: float = 180.0) -> None:
    """Wait until every service has caught up (consumer lag zero, twice in a row)."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        behind = {g.service: unread_messages(settings, g.service)
                  for g in group_lags(settings, SERVICES) if g.lag}
        behind = {k: v for k, v in behind.items() if v}
        calm = calm + 1 if not behind else 0
        if calm >= 2:
            echo("pipeline: drained (lag 0 everywhere)")
            return
        echo("pipeline: catching up, lag " + ", ".join(f"{k}={v}" for k, v in behind.items()))
        time.sleep(2.0)
    raise PlantstreamError(f"pipeline still lagging after {timeout:.0f}s: see `plantstream status`")


# Every query is about this run's site (a re-run of the demo gets a site of its own, see free_site).
SUMMARY_QUERIES: dict[str, str] = {
    "rows": """
        SELECT 'readings' AS table, count() AS rows FROM readings WHERE site = {site}
        UNION ALL SELECT 'rejected', count() FROM rejected WHERE site = {site}
        UNION ALL SELECT 'anomalies', count() FROM anomalies WHERE site = {site}
        UNION ALL SELECT 'alerts (revisions)', count() FROM alerts WHERE site = {site}
        UNION ALL SELECT 'notifications', count() FROM notifications WHERE site = {site}""",
    "dead_letters": """
        SELECT stage, reason, count() AS records FROM rejected WHERE site = {site}
        GROUP BY stage, reason ORDER BY records DESC""",
    "anomalies": """
        SELECT machine, count() AS events, round(max(score), 2) AS max_score,
               arrayStringConcat(arraySlice(topKArray(3)(sensors), 1, 3), ',') AS top_sensors
        FROM anomalies WHERE site = {site} GROUP BY machine ORDER BY events DESC""",
    # One row per alert (one per machine problem) revised during this run (a re-run of the demo
    # keeps the archive: earlier runs' alerts are left out); the evidence shown is the
    # headline's (keys without a dot): every sensor's numbers (``<sensor>.<rule>.<name>``) are
    # on the board.
    "alerts": """
        SELECT alert_id, argMax(severity, revision) AS severity, argMax(state, revision) AS state,
               max(occurrences) AS occurrences,
               arrayStringConcat(argMax(sensors, revision), ',') AS sensors,
               argMax(title, revision) AS title,
               arrayStringConcat(arrayMap((k, v) -> concat(k, '=', toString(round(v, 2))),
                   mapKeys(mapFilter((k, v) -> position(k, '.') = 0, argMax(evidence, revision))),
                   mapValues(mapFilter((k, v) -> position(k, '.') = 0, argMax(evidence, revision)))), ' ')
                   AS evidence
        FROM alerts WHERE site = {site} GROUP BY alert_id
        HAVING max(updated_at) >= fromUnixTimestamp64Micro({wall}) ORDER BY severity DESC, alert_id""",
    # Platform latency: accepted by ingest -> row in ClickHouse (through validation and
    # archival). Sample times are on the factory's compressed clock, so they are not used.
    "latency": """
        SELECT count() AS readings,
               round(quantile(0.5)(dateDiff('millisecond', ingest_time, archived_at)) / 1000, 3) AS p50_s,
               round(quantile(0.9)(dateDiff('millisecond', ingest_time, archived_at)) / 1000, 3) AS p90_s,
               round(quantile(0.99)(dateDiff('millisecond', ingest_time, archived_at)) / 1000, 3) AS p99_s
        FROM readings WHERE site = {site} AND ts >= fromUnixTimestamp64Micro({since})""",
}


def summarize(settings: Settings, run: DemoRun) -> dict[str, list[dict[str, Any]]]:
    """Run the summary queries where analysts would (plantstream sql's path)."""
    from plantstream.db.query import open_target, sql_str

    target = open_target(settings)
    try:
        out = {}
        for name, sql in SUMMARY_QUERIES.items():
            sql = sql.format(since=run.started_us, wall=run.wall_started_us, site=sql_str(run.site))
            out[name] = target.arrow(sql).to_pylist()
        return out
    finally:
        target.close()


def stage_counts(run: DemoRun, summary: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Readings per stage: sent, archived valid, rejected by each stage."""
    rows = {r["table"]: r["rows"] for r in summary["rows"]}
    per_stage: dict[str, int] = {}
    for r in summary["dead_letters"]:
        per_stage[r["stage"]] = per_stage.get(r["stage"], 0) + r["records"]
    out = [{"stage": "gateway (sent, acked)", "readings": run.report.readings},
           {"stage": "archived as valid", "readings": rows.get("readings", 0)}]
    out += [{"stage": f"rejected by {k}", "readings": v} for k, v in sorted(per_stage.items())]
    return out


def alerted_faults(run: DemoRun, summary: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each injected fault next to the alerts raised for its machine (one per machine problem)."""
    out = []
    for w in run.truth:
        prefix = f"{w.tenant}/{w.site}/{w.machine}/"
        hits = [a for a in summary["alerts"] if a["alert_id"].startswith(prefix)]
        out.append({"machine": w.machine, "fault": w.kind, "sensors": ",".join(w.sensors),
                    "alerts": len(hits), "titles": " | ".join(h["title"] for h in hits)})
    return out
