"""Analyst commands: ``plantstream sql`` (one query or an interactive prompt) and
``plantstream report ...`` (the canned reports).

Both work against a ClickHouse server DSN, and in the embedded default whether or not the
archival service holds the data directory (see :mod:`plantstream.db.query`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.errors import PlantstreamError

FORMATS = ("table", "csv", "json", "parquet")


def _output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--output", "-o", type=click.Path(dir_okay=False),
                      help="Write to this file instead of the terminal (required for parquet).")(fn)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format.")(fn)


def write_result(table: Any, fmt: str, output: str | None) -> None:
    """Print or save a pyarrow Table as a table, CSV, JSON (array of objects) or Parquet."""
    if fmt == "parquet":
        if not output:
            raise PlantstreamError("--format parquet needs --output FILE.parquet")
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        click.echo(f"wrote {table.num_rows} rows to {output}", err=True)
        return
    if fmt == "csv":
        import pyarrow.csv as pacsv

        if output:
            pacsv.write_csv(table, output)
        else:
            pacsv.write_csv(table, sys.stdout.buffer)
            sys.stdout.flush()
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), default=str, indent=1)
        if output:
            with open(output, "w") as fh:
                fh.write(text + "\n")
        else:
            click.echo(text)
    else:
        if output:
            raise PlantstreamError("--output needs --format csv, json or parquet")
        print_table(table.to_pylist(), table.column_names)
        click.echo(f"({table.num_rows} rows)", err=True)
    if output:
        click.echo(f"wrote {table.num_rows} rows to {output}", err=True)


def _interactive(target: Any, fmt: str) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    click.echo(f"connected to {target.description}; end statements with ';', \\q quits", err=True)
    lines: list[str] = []
    while True:
        try:
            line = input("plantstream> " if not lines else "       ...> ")
        except EOFError:
            click.echo(err=True)
            return
        if not lines and line.strip() in ("\\q", "quit", "exit"):
            return
        lines.append(line)
        if not line.rstrip().endswith(";"):
            continue
        statement, lines = "\n".join(lines), []
        try:
            write_result(target.arrow(statement), fmt if fmt != "parquet" else "table", None)
        except PlantstreamError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)


@click.command("sql")
@click.argument("query", required=False)
@_output_options
@friendly_errors
def sql(query: str | None, fmt: str, output: str | None) -> None:
    """Run read-only SQL on the archive; without QUERY, open a prompt.

    Tables: readings, readings_1m, readings_1h, rejected, anomalies, alerts, notifications.
    Example: plantstream sql "SELECT machine, count() FROM readings GROUP BY machine"
    """
    from plantstream.db.query import open_target

    target = open_target(settings())
    try:
        if query is None:
            _interactive(target, fmt)
        else:
            write_result(target.arrow(query), fmt, output)
    finally:
        target.close()


def _run_report(sql_text: str, fmt: str, output: str | None) -> None:
    from plantstream.db.query import open_target

    target = open_target(settings())
    try:
        write_result(target.arrow(sql_text), fmt, output)
    finally:
        target.close()


@click.group("report")
def report() -> None:
    """Canned reports: machine health, anomalous sensors, alerts, data quality, trends."""


_tenant = click.option("--tenant", help="Only this tenant.")


@report.command("health")
@_tenant
@click.option("--hours", type=int, default=24, show_default=True, help="Window for readings and anomalies.")
@_output_options
@friendly_errors
def report_health(tenant: str | None, hours: int, fmt: str, output: str | None) -> None:
    """Per machine: last seen, readings and sensors, anomalies, open alerts."""
    from plantstream.db import reports

    _run_report(reports.health(tenant, hours), fmt, output)


@report.command("anomalous-sensors")
@_tenant
@click.option("--hours", type=int, default=168, show_default=True, help="Window.")
@click.option("--limit", type=int, default=20, show_default=True)
@_output_options
@friendly_errors
def report_anomalous(tenant: str | None, hours: int, limit: int, fmt: str, output: str | None) -> None:
    """Sensors ranked by their share of anomaly scores."""
    from plantstream.db import reports

    _run_report(reports.anomalous_sensors(tenant, hours, limit), fmt, output)


@report.command("alerts")
@_tenant
@click.option("--hours", type=int, default=720, show_default=True, help="Alerts raised in this window.")
@_output_options
@friendly_errors
def report_alerts(tenant: str | None, hours: int, fmt: str, output: str | None) -> None:
    """Alert counts by severity and state, mean time to acknowledge and to resolve."""
    from plantstream.db import reports

    _run_report(reports.alerts(tenant, hours), fmt, output)


@report.command("data-quality")
@_tenant
@click.option("--hours", type=int, default=168, show_default=True, help="Window.")
@_output_options
@friendly_errors
def report_quality(tenant: str | None, hours: int, fmt: str, output: str | None) -> None:
    """Dead letters by stage, reason and source topic."""
    from plantstream.db import reports

    _run_report(reports.data_quality(tenant, hours), fmt, output)


@report.command("trend")
@click.option("--machine", required=True)
@click.option("--sensor", required=True)
@click.option("--from", "start", required=True, help="Start, ISO 8601 (UTC if no offset).")
@click.option("--to", "end", required=True, help="End (exclusive), ISO 8601.")
@click.option("--every", type=click.Choice(["raw", "1m", "1h"]), default="1m", show_default=True,
              help="Raw readings or per-minute / per-hour min, avg, max from the rollups.")
@_tenant
@click.option("--site")
@_output_options
@friendly_errors
def report_trend(machine: str, sensor: str, start: str, end: str, every: str, tenant: str | None,
                 site: str | None, fmt: str, output: str | None) -> None:
    """One sensor's values over a time range (export with --format csv|parquet --output)."""
    from plantstream.db import reports

    sql_text = reports.trend(machine, sensor, reports.parse_time(start), reports.parse_time(end),
                             every, tenant, site)
    _run_report(sql_text, fmt, output)


commands = [sql, report]
