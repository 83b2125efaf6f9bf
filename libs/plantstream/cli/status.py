"""`plantstream status`: each service's throughput and consumer lag, live."""

from __future__ import annotations

import time

import click

from plantstream.cli.common import friendly_errors, settings


@click.command("status")
@click.option("--watch", "-w", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes.")
@friendly_errors
def status(watch: bool, interval: float) -> None:
    """Throughput (messages/s committed) and lag (unread messages, up to 1000) of every service."""
    from plantstream.kafka import check_broker
    from plantstream.lag import group_lags, unread_messages
    from plantstream.supervisor import status as processes

    s = settings()
    check_broker(s)
    before = {g.service: g.committed for g in group_lags(s)}
    t0 = time.monotonic()
    while True:
        time.sleep(interval if watch else min(interval, 1.0))
        lags = group_lags(s)
        dt = time.monotonic() - t0
        alive = {}
        for p in processes(s):
            alive.setdefault(p.service, [0, 0])
            alive[p.service][0] += int(p.alive)
            alive[p.service][1] += 1
        if watch:
            click.clear()
        click.echo(f"{'service':12s} {'copies':>7s} {'members':>7s} {'msgs/s':>9s} {'lag':>9s}  group")
        for g in lags:
            rate = (g.committed - before.get(g.service, g.committed)) / dt if dt else 0.0
            up, total = alive.get(g.service, [0, 0])
            copies = f"{up}/{total}"
            lag = unread_messages(s, g.service) if g.lag else 0  # offsets count commit markers too
            click.echo(f"{g.service:12s} {copies:>7s} {g.members:>7d} {rate:>9.1f} {lag:>9d}  {g.group}")
        if not watch:
            return
        before = {g.service: g.committed for g in lags}
        t0 = time.monotonic()


commands = [status]
