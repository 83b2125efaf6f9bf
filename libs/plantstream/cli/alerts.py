"""``plantstream alerts``: list, show, acknowledge, resolve and silence alerts.

The current state of every alert is the latest revision on the alerts topic, so the CLI
replays the topic (it is small: one record per change) and checks a command against that
state before sending it, refusing invalid transitions with a clear message. The maintenance
service checks again when applying (the state may have moved meanwhile) and dead-letters
commands it cannot apply.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import click

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.errors import ConfigError
from plantstream.settings import Settings

STATES = ("open", "acknowledged", "resolved")


def alert_history(s: Settings, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    """Every alert's revisions (ascending), read from the start of the alerts topic to its end
    (committed records only: maintenance writes them in transactions)."""
    from plantstream.avro import AvroCodec
    from plantstream.changelog import read_changelog
    from plantstream.errors import DecodeError
    from plantstream.kafka import admin_client, check_broker
    from plantstream.topics import ALERTS

    check_broker(s)
    topic = ALERTS.physical(s)
    codec = AvroCodec()
    meta = admin_client(s).list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ConfigError(f"topic {topic} does not exist; run `plantstream topics create`")
    history: dict[str, dict[int, dict[str, Any]]] = {}
    for msg in read_changelog(s, topic, sorted(meta.partitions), timeout=timeout):
        try:
            rec = codec.decode(msg.value(), "alert_event")
        except DecodeError:
            continue
        history.setdefault(rec["alert_id"], {})[rec["revision"]] = rec
    return {aid: [revs[r] for r in sorted(revs)] for aid, revs in history.items()}


def latest(s: Settings) -> dict[str, dict[str, Any]]:
    return {aid: revs[-1] for aid, revs in alert_history(s).items()}


def _ts(us: int | None) -> str:
    return "" if not us else datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_until(text: str, now_us: int) -> int:
    """``2h``/``30m``/``1d`` from now, or an ISO date-time (UTC if no zone) -> microseconds."""
    from plantstream.notify.config import parse_duration

    try:
        return now_us + int(parse_duration(text, "--until") * 1e6)
    except ConfigError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--until {text!r}: give a duration (30m, 2h, 1d) or an ISO time") from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1e6)


@click.group()
def alerts() -> None:
    """List alerts and acknowledge, resolve or silence them."""


@alerts.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only alerts in this state.")
@click.option("--machine", help="Only this machine (id or tenant/site/machine).")
@friendly_errors
def list_alerts(state: str | None, machine: str | None) -> None:
    """The latest revision of every alert, newest first."""
    rows = []
    for a in sorted(latest(settings()).values(), key=lambda a: a["updated_at"], reverse=True):
        full = f"{a['tenant']}/{a['site']}/{a['machine']}"
        if (state and a["state"] != state) or (machine and machine not in (a["machine"], full)):
            continue
        rows.append({"alert_id": a["alert_id"], "state": a["state"], "severity": a["severity"],
                     "level": a["escalation_level"], "seen": a["occurrences"],
                     "last_seen": _ts(a["last_seen"]), "title": a["title"]})
    print_table(rows)


@alerts.command()
@click.argument("alert_id")
@friendly_errors
def show(alert_id: str) -> None:
    """One alert: its current state, evidence and the history of its revisions."""
    revs = alert_history(settings()).get(alert_id)
    if not revs:
        raise ConfigError(f"no alert {alert_id}; `plantstream alerts list` shows the known ids")
    a = revs[-1]
    for k in ("alert_id", "state", "severity", "rule", "title", "occurrences", "escalation_level",
              "recommended_action", "actor", "note"):
        click.echo(f"{k:>20}: {'' if a[k] is None else a[k]}")
    where = f"{a['tenant']}/{a['site']}/{a['machine']}"
    click.echo(f"{'machine':>20}: {where}  sensors: {', '.join(a['sensors'])}")
    click.echo(f"{'first/last seen':>20}: {_ts(a['first_seen'])} / {_ts(a['last_seen'])}")
    if a["silenced_until"]:
        click.echo(f"{'silenced until':>20}: {_ts(a['silenced_until'])}")
    click.echo(f"{'evidence':>20}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(a["evidence"].items())))
    click.echo("")
    print_table([{"rev": r["revision"], "at": _ts(r["updated_at"]), "state": r["state"],
                  "severity": r["severity"], "level": r["escalation_level"], "seen": r["occurrences"],
                  "actor": r["actor"], "note": r["note"]} for r in revs])


def command_record(current: dict[str, Any] | None, alert_id: str, action: str, actor: str,
                   reason: str | None, until_us: int | None, now_us: int) -> dict[str, Any]:
    """The ``alert_command`` record for ``action`` on ``current`` (the alert's latest revision),
    after the shared rule table agreed; raises ``InvalidCommand`` with the reason otherwise.
    The CLI and the board both build commands here."""
    from plantstream.alertstate import check_command

    check_command(current, alert_id, action, until_us, now_us)
    assert current is not None
    return {"command_id": str(uuid.uuid4()), "alert_id": alert_id, "tenant": current["tenant"],
            "site": current["site"], "machine": current["machine"], "action": action, "actor": actor,
            "reason": reason, "until": until_us, "issued_at": now_us}


def send_command(s: Settings, cmd: dict[str, Any], as_tenant: str | None = None) -> None:
    """Write one command to the commands topic of ``as_tenant`` (the board: its user's tenant;
    default: the command's), keyed by its machine, and wait for the broker. Maintenance refuses
    a command whose alert is not that tenant's."""
    from plantstream.avro import AvroCodec
    from plantstream.kafka import Output, ReliableProducer
    from plantstream.topics import TENANT_ALERT_COMMANDS, machine_key

    key = machine_key(cmd["tenant"], cmd["site"], cmd["machine"])
    topic = TENANT_ALERT_COMMANDS.for_tenant(s, as_tenant or cmd["tenant"])
    producer = ReliableProducer(s)
    producer.produce(Output(topic, key, AvroCodec().encode("alert_command", cmd)))
    producer.flush()


def _command(alert_id: str, action: str, actor: str, reason: str | None, until: str | None,
             wait: float) -> None:
    s = settings()
    current = latest(s).get(alert_id)
    now = int(time.time() * 1e6)
    until_us = parse_until(until, now) if until else None
    send_command(s, command_record(current, alert_id, action, actor, reason, until_us, now))
    assert current is not None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now_rev = latest(s).get(alert_id)
        if now_rev and now_rev["revision"] > current["revision"] and now_rev["actor"] == actor:
            click.echo(f"{alert_id}: {now_rev['state']} by {actor} (revision {now_rev['revision']})")
            return
    click.secho(f"{alert_id}: {action} sent; the maintenance service has not confirmed it within {wait:.0f}s "
                "(is it running?)", fg="yellow")


_by = click.option("--by", "actor", required=True, help="Who you are (name or tool id).")
_wait = click.option("--wait", default=15.0, show_default=True,
                     help="Seconds to wait for the service to confirm.")


@alerts.command()
@click.argument("alert_id")
@_by
@click.option("--reason", help="Why (free text).")
@_wait
@friendly_errors
def ack(alert_id: str, actor: str, reason: str | None, wait: float) -> None:
    """Acknowledge an open alert: someone is on it (stops escalation and reminders)."""
    _command(alert_id, "acknowledge", actor, reason, None, wait)


@alerts.command()
@click.argument("alert_id")
@_by
@click.option("--reason", help="Why / what was done.")
@_wait
@friendly_errors
def resolve(alert_id: str, actor: str, reason: str | None, wait: float) -> None:
    """Resolve an open or acknowledged alert."""
    _command(alert_id, "resolve", actor, reason, None, wait)


@alerts.command()
@click.argument("alert_id")
@_by
@click.option("--until", required=True, help="How long: 30m, 2h, 1d, or an ISO date-time.")
@click.option("--reason", help="Why (free text).")
@_wait
@friendly_errors
def silence(alert_id: str, actor: str, until: str, reason: str | None, wait: float) -> None:
    """Suppress notifications (and escalation) for an alert until a time."""
    _command(alert_id, "silence", actor, reason, until, wait)


commands = [alerts]
