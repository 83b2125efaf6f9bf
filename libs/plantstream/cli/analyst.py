"""Analyst commands: ``plantstream sql`` (one query or an interactive prompt) and
``plantstream report ...`` (the canned reports).

Both work against a ClickHouse server DSN, and in the embedded default whether or not the
archival service holds the data directory (see :mod:`plantstream.db.query`).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

import click
import pyarrow as pa

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.errors import PlantstreamError

FORMATS = ("table", "csv", "json", "parquet")


def _output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--output", "-o", type=click.Path(dir_okay=False),
                      help="Write to this file instead of the terminal (required for parquet).")(fn)
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format.")(fn)


# Bidirectional-text controls reorder what a terminal shows (the "Trojan Source" trick).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters (ESC, CR, NUL, C1, bidi overrides) shown as escapes,
    so ids a gateway chose cannot drive the analyst's terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _as_binary(typ: pa.DataType) -> pa.DataType:
    """``typ`` with every string type replaced by the binary type of the same layout."""
    if pa.types.is_string(typ):
        return pa.binary()
    if pa.types.is_large_string(typ):
        return pa.large_binary()
    if pa.types.is_list(typ):
        return pa.list_(_as_binary(typ.value_type))
    if pa.types.is_large_list(typ):
        return pa.large_list(_as_binary(typ.value_type))
    if pa.types.is_map(typ):
        return pa.map_(_as_binary(typ.key_type), _as_binary(typ.item_type))
    if pa.types.is_struct(typ):
        return pa.struct([f.with_type(_as_binary(f.type)) for f in typ])
    return typ


def _unescaped_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, list):
        return [_unescaped_bytes(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unescaped_bytes(v) for v in value)
    if isinstance(value, dict):
        return {k: _unescaped_bytes(v) for k, v in value.items()}
    return value


def text_safe(table: pa.Table, keep_bytes: bool = False) -> pa.Table:
    """The table with every column that holds invalid UTF-8 in a string (ClickHouse String is
    bytes: e.g. ``rejected.original``) made safe: as binary when ``keep_bytes`` (Parquet keeps
    them exactly), else as text with the bad bytes escaped (``\\xff``)."""
    columns = []
    for col in table.columns:
        try:
            col.validate(full=True)
            columns.append(col)
            continue
        except pa.ArrowInvalid:
            pass
        if pa.types.is_dictionary(col.type):
            col = pa.chunked_array([c.dictionary_decode() for c in col.chunks], type=col.type.value_type)
        raw = col.cast(_as_binary(col.type))
        if keep_bytes:
            columns.append(raw)
        else:
            columns.append(pa.array(_unescaped_bytes(raw.to_pylist()), type=col.type))
    return pa.Table.from_arrays(columns, names=table.column_names)


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list | dict | tuple):
        return printable(str(value))
    return value


def write_result(table: Any, fmt: str, output: str | None) -> None:
    """Print or save a pyarrow Table as a table, CSV, JSON (array of objects) or Parquet;
    any bytes come out safely (see :func:`text_safe` and :func:`printable`)."""
    table = text_safe(table, keep_bytes=fmt == "parquet")
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
        names = [printable(n) for n in table.column_names]
        columns = [[_cell(v) for v in col.to_pylist()] for col in table.columns]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        print_table(rows, names)
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
