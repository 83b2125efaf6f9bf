"""Run one service in the foreground, or manage all of them as background processes."""

from __future__ import annotations

import importlib

import click

from plantstream.cli.common import friendly_errors, print_table, settings
from plantstream.supervisor import APPS, RUNNABLE


@click.command("run")
@click.argument("service", type=click.Choice(RUNNABLE))
def run(service: str) -> None:
    """Run SERVICE in the foreground (what `python -m SERVICE` does)."""
    importlib.import_module(f"{service}.service").main()


@click.group("services")
def services() -> None:
    """Start, stop and list the services as local background processes."""


@services.command("start")
@click.argument("names", nargs=-1, type=click.Choice(RUNNABLE))
@click.option("--copies", default=1, show_default=True, help="Copies of each service (same group).")
@friendly_errors
def services_start(names: tuple[str, ...], copies: int) -> None:
    """Start NAMES (default: the six services and the board)."""
    from plantstream import supervisor

    s = settings()
    for name in names or RUNNABLE:
        for copy in range(1 if name in APPS else copies):
            pid = supervisor.start(s, name, copy)
            click.echo(f"{name}-{copy}: pid {pid}, log {s.home / 'logs' / f'{name}-{copy}.log'}")


@services.command("stop")
@click.argument("names", nargs=-1, type=click.Choice(RUNNABLE))
@friendly_errors
def services_stop(names: tuple[str, ...]) -> None:
    """Stop NAMES (default: all): SIGTERM, so each commits its batch before leaving."""
    from plantstream import supervisor

    s = settings()
    stopped = [x for name in (names or (None,)) for x in supervisor.stop(s, name)]
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no services running")


@services.command("status")
@friendly_errors
def services_status() -> None:
    """One line per service copy: pid, alive, log file."""
    from plantstream import supervisor

    print_table([{"service": f"{p.service}-{p.copy}", "pid": p.pid, "alive": p.alive, "log": p.log}
                 for p in supervisor.status(settings())])


commands = [run, services]
