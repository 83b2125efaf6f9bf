"""HTML of the board's pages. Every value that comes from data (ids from gateways, titles,
notes people typed) goes through :func:`h`, so a machine called ``<script>`` is shown, not run;
pages carry no inline script (the Content-Security-Policy forbids it), only ``/static``."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urlencode

from board.view import (
    SEVERITIES,
    STATE_FILTERS,
    Alert,
    Filters,
    allowed_states,
    fmt_ago,
    fmt_number,
    fmt_time,
    severity_counts,
    shelved,
)

SHELVE_CHOICES = (("1h", "1 hour"), ("4h", "4 hours"), ("8h", "8 hours (a shift)"), ("1d", "1 day"),
                  ("7d", "7 days"))
# The alert page plots its trends with uPlot (vendored in static/, MIT): loaded before board.js
# (both deferred, so in this order) and only on the page that draws a chart.
CHART_HEAD = ('<link rel="stylesheet" href="/static/uPlot.min.css">'
              '<script src="/static/uPlot.iife.min.js" defer></script>')


def h(value: Any) -> str:
    """Escaped text for HTML content and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def alert_href(alert_id: str) -> str:
    return "/alert?" + urlencode({"id": alert_id})


def layout(title: str, body: str, *, user: str | None = None, tenant: str | None = None,
           csrf: str | None = None, page: str = "", live: bool = False) -> str:
    nav = ""
    if user:
        nav = (f'<nav><a href="/"{_current(page, "alerts")}>Alerts</a>'
               f'<a href="/machines"{_current(page, "machines")}>Machines</a>'
               f'<span class="who">{h(user)} · {h(tenant)}</span>'
               f'<form method="post" action="/logout" class="inline">{csrf_field(csrf)}'
               '<button type="submit" class="link">Log out</button></form></nav>')
    live_el = ('<p id="live" class="live" aria-live="polite" data-state="connecting">connecting…</p>'
               if live else "")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{h(title)} · plantstream board</title>"
            f"{CHART_HEAD if page == 'alert' else ''}"
            "<link rel=\"stylesheet\" href=\"/static/board.css\">"
            "<script src=\"/static/board.js\" defer></script></head>"
            f"<body data-page=\"{h(page)}\"><header><a class=\"brand\" href=\"/\">plantstream board</a>{nav}"
            f"</header><main>{live_el}{body}</main></body></html>")


def _current(page: str, name: str) -> str:
    return ' aria-current="page"' if page == name else ""


def csrf_field(token: str | None) -> str:
    return f'<input type="hidden" name="csrf" value="{h(token)}">'


def login_page(csrf: str, error: str = "") -> str:
    err = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    body = (f'<section class="card narrow"><h1>Log in</h1>{err}'
            f'<form method="post" action="/login">{csrf_field(csrf)}'
            '<label>Name <input name="user" autocomplete="username" required autofocus></label>'
            '<label>Password <input name="password" type="password" autocomplete="current-password" '
            'required></label><button type="submit">Log in</button></form></section>')
    return layout("Log in", body)


def error_page(title: str, message: str, **kw: Any) -> str:
    return layout(title, f'<section class="card"><h1>{h(title)}</h1><p>{h(message)}</p>'
                         '<p><a href="/">Back to the alerts</a></p></section>', **kw)


def _badge(kind: str, value: str, field: str = "") -> str:
    attr = f' data-field="{field}"' if field else ""
    return f'<span class="badge {kind}-{h(value)}"{attr}>{h(value)}</span>'


def _options(values: list[str], chosen: str, blank: str | None = None) -> str:
    out = [f'<option value="">{h(blank)}</option>'] if blank is not None else []
    for v in values:
        sel = " selected" if v == chosen else ""
        out.append(f'<option value="{h(v)}"{sel}>{h(v)}</option>')
    return "".join(out)


def alerts_page(alerts: list[Alert], every: list[Alert], f: Filters, now_us: int, **kw: Any) -> str:
    """Alerts matching ``f`` (already ordered), with filter choices taken from ``every``."""
    sites = sorted({a["site"] for a in every})
    machines = sorted({a["machine"] for a in every if not f.site or a["site"] == f.site})
    counts = severity_counts(alerts)
    summary = "".join(f'<li>{_badge("sev", s)} <strong data-count="{s}">{counts[s]}</strong></li>'
                      for s in SEVERITIES)
    by_machine: dict[tuple[str, str], int] = {}
    for a in alerts:
        by_machine[(a["site"], a["machine"])] = by_machine.get((a["site"], a["machine"]), 0) + 1
    machine_chips = "".join(
        f'<li><a href="/?{h(urlencode({"site": s, "machine": m, "state": f.state}))}">{h(m)}</a> '
        f'<span class="muted">{h(s)}</span> <strong>{n}</strong></li>'
        for (s, m), n in sorted(by_machine.items()))
    filters = (
        '<form method="get" action="/" class="filters">'
        f'<label>Site <select name="site">{_options(sites, f.site, "all sites")}</select></label>'
        f'<label>Machine <select name="machine">{_options(machines, f.machine, "all machines")}'
        '</select></label>'
        f'<label>Severity <select name="severity">{_options(list(SEVERITIES), f.severity, "any")}'
        '</select></label>'
        f'<label>State <select name="state">{_options(list(STATE_FILTERS), f.state)}</select></label>'
        '<button type="submit">Filter</button></form>')
    rows = "".join(_alert_row(a, now_us) for a in alerts)
    table = ('<table class="alerts"><thead><tr><th>Severity</th><th>Machine</th><th>Alert</th><th>State</th>'
             f'<th>Last seen</th><th>Rev</th></tr></thead><tbody>{rows}</tbody></table>' if alerts
             else '<p class="empty">No alerts match these filters.</p>')
    body = (f'<h1>Alerts</h1>{filters}<ul class="summary">{summary}</ul>'
            f'<ul class="machines-chips">{machine_chips}</ul>'
            '<p id="new-alerts" class="notice" hidden>New alerts arrived: <a href="">reload</a></p>'
            f'{table}')
    return layout("Alerts", body, page="alerts", live=True, **kw)


def _alert_row(a: Alert, now_us: int) -> str:
    until = f'shelved until {fmt_time(a["silenced_until"])}' if shelved(a, now_us) else ""
    shelf = f' <span class="muted" data-field="shelved">{h(until)}</span>'
    return (f'<tr data-alert-id="{h(a["alert_id"])}" class="sev-{h(a["severity"])}">'
            f'<td data-label="Severity">{_badge("sev", a["severity"], "severity")}</td>'
            f'<td data-label="Machine">{h(a["machine"])} <span class="muted">{h(a["site"])}</span></td>'
            f'<td data-label="Alert"><a href="{h(alert_href(a["alert_id"]))}" data-field="title">'
            f'{h(a["title"])}</a></td>'
            f'<td data-label="State">{_badge("state", a["state"], "state")}{shelf}</td>'
            f'<td data-label="Last seen" title="{h(fmt_time(a["last_seen"]))}">'
            f'{h(fmt_ago(a["last_seen"], now_us))}</td>'
            f'<td data-label="Rev" data-field="revision">{a["revision"]}</td></tr>')


def alert_page(a: Alert, revisions: list[Alert], refused: list[dict[str, Any]], anomalies: list[dict],
               now_us: int, csrf: str, user: str, message: str = "", **kw: Any) -> str:
    evidence = "".join(f"<tr><th>{h(k)}</th><td>{h(fmt_number(v))}</td></tr>"
                       for k, v in sorted(a["evidence"].items()))
    facts = [("Machine", f'{a["tenant"]}/{a["site"]}/{a["machine"]}'), ("Rule", a["rule"]),
             ("Sensors", ", ".join(a["sensors"]) or "(the machine as a whole)"),
             ("First seen", fmt_time(a["first_seen"])), ("Last seen", fmt_time(a["last_seen"])),
             ("Occurrences", a["occurrences"]), ("Escalation level", a["escalation_level"])]
    fact_rows = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in facts)
    shelf = f'shelved until {fmt_time(a["silenced_until"])}' if shelved(a, now_us) else ""
    action = (f'<p class="action"><strong>Recommended action:</strong> {h(a["recommended_action"])}</p>'
              if a.get("recommended_action") else "")
    history = "".join(_revision_row(r) for r in revisions)
    refused_rows = "".join(
        f'<li>{h(fmt_time(c["issued_at"]))}: {h(c["action"])} by {h(c["actor"])}'
        f'{" (" + h(c["reason"]) + ")" if c["reason"] else ""}: <em>refused</em>, {h(c["refused"])}</li>'
        for c in refused)
    refused_html = f'<h3>Refused commands</h3><ul class="refused">{refused_rows}</ul>' if refused else ""
    anomaly_rows = "".join(
        f'<tr><td>{h(fmt_time(x["ts"]))}</td><td>{h(x["kind"])}</td>'
        f'<td>{h(", ".join(f"{s} {w:.0%}" for s, w in zip(x["sensors"], x["shares"], strict=False)))}</td>'
        f'<td>{h(x["revisions"])}</td></tr>' for x in anomalies)
    anomaly_html = ('<table><thead><tr><th>Time</th><th>Kind</th><th>Sensors (share)</th>'
                    f'<th>Updates</th></tr></thead><tbody>{anomaly_rows}</tbody></table>' if anomalies
                    else '<p class="muted">No anomaly episodes of this machine around the alert.</p>')
    trend_src = "/api/trend?" + urlencode({"id": a["alert_id"]})
    msg = f'<p class="notice" id="command-result" role="status">{h(message)}</p>' if message else \
        '<p class="notice" id="command-result" role="status" hidden></p>'
    body = (
        f'<article class="alert" data-alert-id="{h(a["alert_id"])}">'
        f'<h1 data-field="title">{h(a["title"])}</h1>'
        f'<p class="badges">{_badge("sev", a["severity"], "severity")} '
        f'{_badge("state", a["state"], "state")} '
        f'<span class="muted" data-field="shelved">{h(shelf)}</span> '
        f'<span class="muted">revision <span data-field="revision">{a["revision"]}</span></span></p>'
        f'{action}{msg}'
        f'{_command_forms(a, csrf, user)}'
        '<section class="card"><h2>Sensor trend</h2>'
        f'<div id="trend" class="trend" data-src="{h(trend_src)}" role="img" '
        'aria-label="sensor trends around the alert"></div>'
        '<p id="trend-legend" class="legend"></p></section>'
        f'<section class="card two"><div><h2>Facts</h2><table class="kv">{fact_rows}</table></div>'
        f'<div><h2>Evidence</h2><table class="kv">{evidence}</table></div></section>'
        f'<section class="card"><h2>Anomaly episodes</h2>{anomaly_html}</section>'
        '<section class="card"><h2>History</h2><table class="history"><thead><tr><th>Rev</th><th>Time</th>'
        '<th>State</th><th>Severity</th><th>Seen</th><th>By</th><th>Note</th></tr></thead>'
        f'<tbody id="history">{history}</tbody></table>{refused_html}</section></article>')
    return layout(a["title"], body, page="alert", live=True, csrf=csrf, user=user, **kw)


def _revision_row(r: Alert) -> str:
    return (f'<tr><td>{r["revision"]}</td><td>{h(fmt_time(r["updated_at"]))}</td><td>{h(r["state"])}</td>'
            f'<td>{h(r["severity"])}</td><td>{r["occurrences"]}</td><td>{h(r.get("actor") or "")}</td>'
            f'<td>{h(r.get("note") or "")}</td></tr>')


def _command_forms(a: Alert, csrf: str, user: str) -> str:
    def form(action: str, label: str, extra: str = "") -> str:
        states = allowed_states(action)
        hidden = "" if a["state"] in states else " hidden"
        return (f'<form method="post" action="/alert/command" class="command card" data-action="{action}" '
                f'data-allowed-in="{h(" ".join(states))}"{hidden}>{csrf_field(csrf)}'
                f'<input type="hidden" name="id" value="{h(a["alert_id"])}">'
                f'<input type="hidden" name="action" value="{action}"><h2>{h(label)}</h2>'
                f'<label>Your name <input name="name" value="{h(user)}" maxlength="64" required></label>'
                '<label>Comment <textarea name="comment" maxlength="500" rows="2"></textarea></label>'
                f'{extra}<button type="submit">{h(label)}</button></form>')

    until = "".join(f'<option value="{v}">{h(t)}</option>' for v, t in SHELVE_CHOICES)
    return ('<section class="commands">'
            + form("acknowledge", "Acknowledge")
            + form("silence", "Shelve", f'<label>For <select name="until">{until}</select></label>')
            + form("resolve", "Resolve") + "</section>")


def machines_page(machines: list[dict[str, Any]], open_by_machine: dict[tuple[str, str], dict[str, int]],
                  now_us: int, **kw: Any) -> str:
    rows = []
    for m in machines:
        counts = open_by_machine.get((m["site"], m["machine"]), {})
        worst = next((s for s in SEVERITIES if counts.get(s)), "ok")
        alerts = " ".join(f'{_badge("sev", s)} {counts[s]}' for s in SEVERITIES if counts.get(s)) or "none"
        link = "/?" + urlencode({"site": m["site"], "machine": m["machine"]})
        rows.append(f'<tr class="sev-{worst}"><td data-label="Machine">'
                    f'<a href="{h(link)}">{h(m["machine"])}</a> '
                    f'<span class="muted">{h(m["site"])}</span></td>'
                    f'<td data-label="Last seen" title="{h(fmt_time(m["last_seen"]))}">'
                    f'{h(fmt_ago(m["last_seen"], now_us))}</td>'
                    f'<td data-label="Open alerts">{alerts}</td>'
                    f'<td data-label="Anomaly episodes (24 h)">{m["episodes"]}</td></tr>')
    table = ('<table class="machines"><thead><tr><th>Machine</th><th>Last seen</th><th>Open alerts</th>'
             f'<th>Anomaly episodes (24 h)</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
             if rows else '<p class="empty">No machine has sent data yet.</p>')
    return layout("Machines", f"<h1>Machine health</h1>{table}", page="machines", **kw)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
