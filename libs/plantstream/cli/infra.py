"""Commands for the platform's infrastructure: topics, ClickHouse migrations, schemas, broker."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.settings import REPO_ROOT


@click.group()
def topics() -> None:
    """Create and list the Kafka topics of the catalog."""


@topics.command("create")
@friendly_errors
def topics_create() -> None:
    """Create every catalog topic that is missing (idempotent)."""
    from plantstream.kafka import check_broker, create_topics

    s = settings()
    check_broker(s)
    for name, state in create_topics(s).items():
        click.echo(f"{name:32s} {state}")


@topics.command("list")
@friendly_errors
def topics_list() -> None:
    """Show the catalog topics, their partitions, schema, key and retention."""
    from plantstream.kafka import check_broker, describe_topics

    s = settings()
    check_broker(s)
    print_table(describe_topics(s))


@click.group()
def db() -> None:
    """ClickHouse: apply migrations, show what is applied."""


@db.command("migrate")
@click.option("--ttl-days", type=int, default=None, envvar="PLANTSTREAM_CLICKHOUSE_TTL_DAYS",
              help="Retention of archived rows in days (default 3650).")
@friendly_errors
def db_migrate(ttl_days: int | None) -> None:
    """Apply pending DDL migrations (idempotent)."""
    from plantstream.db import connect, migrate
    from plantstream.db.clickhouse import redacted
    from plantstream.db.query import find_endpoint

    s = settings()
    if find_endpoint(s) is not None:  # it holds the embedded directory and migrated on start
        click.echo(f"clickhouse {redacted(s.clickhouse_url)}: open in the running archival service, which "
                   "applies migrations when it starts; nothing to do")
        return
    ran = migrate(connect(s.clickhouse_url), ttl_days=ttl_days or s.clickhouse_ttl_days)
    done = f"applied {', '.join(ran)}" if ran else "up to date"
    click.echo(f"clickhouse {redacted(s.clickhouse_url)}: {done}")


@db.command("status")
@friendly_errors
def db_status() -> None:
    """List applied and pending migrations."""
    from plantstream.db import applied_versions, connect
    from plantstream.db.migrate import available

    done = applied_versions(connect(settings().clickhouse_url))
    print_table([{"version": v, "name": n, "state": "applied" if v in done else "pending"}
                 for v, n, _ in available()])


@click.group()
def schemas() -> None:
    """The Avro contract under schemas/."""


@schemas.command("list")
@friendly_errors
def schemas_list() -> None:
    """Every schema version with its fingerprint."""
    from plantstream.schemas import default_registry

    reg = default_registry()
    print_table([{"schema": v.name, "version": v.version, "fingerprint": f"{v.fingerprint:016x}"}
                 for vs in reg.by_name.values() for v in vs])


@schemas.command("check")
@friendly_errors
def schemas_check() -> None:
    """Check that every version of every schema reads every other (exit 1 if not)."""
    from plantstream.schemas import compatibility_problems, default_registry

    problems = compatibility_problems(default_registry())
    for p in problems:
        click.secho(p, fg="red")
    if problems:
        sys.exit(1)
    click.echo("all schema versions are backward and forward compatible")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("action", type=click.Choice(["install", "start", "stop", "status", "logs", "version"]))
@click.argument("args", nargs=-1)
def broker(action: str, args: tuple[str, ...]) -> None:
    """The project-local Kafka broker (KRaft): install, start, stop, status, logs, version."""
    script = REPO_ROOT / "deploy" / "local" / "kafka.sh"
    sys.exit(subprocess.call([str(script), action, *args], env=os.environ.copy()))
@click.group()
def kafka() -> None:
    """Kafka logins and ACLs: who may produce and consume what (generated from the topic catalog)."""


@kafka.command("acls")
@click.option("--who", default=None, help="One service, or 'gateway' (default: all).")
@friendly_errors
def kafka_acls(who: str | None) -> None:
    """Show the ALLOW ACLs each principal gets; anything else is refused by the broker."""
    from plantstream.kafkaauth import grants, principal
    from plantstream.topics import GATEWAY, services

    s = settings()
    rows = []
    for name in [who] if who else [*services(), GATEWAY]:
        shown = f"{principal(s, GATEWAY)}.<tenant>.<name>" if name == GATEWAY else principal(s, name)
        rows += [{"principal": shown, "operation": g.operation, "resource": g.resource,
                  "name": g.name + ("*" if g.prefixed else "")} for g in grants(s, name)]
    print_table(rows)


@kafka.command("add-gateway")
@click.argument("name")
@click.option("--tenant", required=True, help="The tenant (of the asset registry) the gateway belongs to.")
@friendly_errors
def kafka_add_gateway(name: str, tenant: str) -> None:
    """Create gateway NAME's login: it may write TENANT's gateway batches, nothing else (ingest
    refuses a batch naming another tenant). Prints how the gateway uses it. Needs the admin
    login; running it again keeps the password."""
    from plantstream.assets import registry_tenants
    from plantstream.errors import PlantstreamError
    from plantstream.kafkaauth import add_gateway, gateway_principal, password_file

    s = settings()
    known = registry_tenants(s)
    if tenant not in known:
        raise PlantstreamError(f"tenant {tenant!r} has no machines in the asset registry "
                               f"(tenants: {', '.join(sorted(known)) or 'none'}); publish them first "
                               "with `plantstream assets apply FILE`")
    gw = add_gateway(s, name, tenant)
    click.echo(f"principal      {gw.kafka_username} (tenant {tenant})")
    click.echo(f"password file  {password_file(s, gateway_principal(tenant, name))} "
               "(mode 0600; copy it to the gateway)")
    click.echo(f"on the gateway: PLANTSTREAM_KAFKA_USERNAME={gw.kafka_username} "
               "PLANTSTREAM_KAFKA_PASSWORD_FILE=<that file>")


commands = [broker, topics, db, schemas, kafka]
