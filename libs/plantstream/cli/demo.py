"""`plantstream demo`: the whole platform on this machine, with a simulated factory."""

from __future__ import annotations

import json

import click

from plantstream.cli.common import friendly_errors, print_table, settings


@click.command("demo")
@click.option("--seconds", default=60.0, show_default=True, help="Wall-clock seconds of simulated data.")
@click.option("--machines", default=8, show_default=True, help="Machines in the simulated factory.")
@click.option("--faulty", default=3, show_default=True, help="Machines that get an injected fault.")
@click.option("--rate", default=4000.0, show_default=True, help="Readings per second from the factory.")
@click.option("--seed", default=7, show_default=True, help="Simulator seed (same seed, same factory).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the summary as JSON here.")
@friendly_errors
def demo(seconds: float, machines: int, faulty: int, rate: float, seed: int, json_out: str | None) -> None:
    """Start the six services and the board, simulate a factory with faults, print what every stage did.

    Expects the broker to run (`make demo` starts it). The services keep running afterwards:
    try `plantstream status`, `plantstream alerts list`, `plantstream sql`; `make down` stops all.
    """
    from plantstream import demo as d
    from plantstream.telemetry import flush_tracing, setup_tracing

    s = settings()
    setup_tracing("gateway", s)
    d.start_stack(s, click.echo)
    run = d.simulate(s, click.echo, machines=machines, faulty=faulty, seconds=seconds, rate=rate, seed=seed)
    d.drain(s, click.echo)
    summary = d.summarize(s, run)
    for title, rows in [("Readings per stage", d.stage_counts(run, summary)),
                        ("Rows in ClickHouse", summary["rows"]),
                        ("Dead letters by reason", summary["dead_letters"]),
                        ("Anomaly events by machine", summary["anomalies"]),
                        ("Alerts (latest revision, with evidence)", summary["alerts"]),
                        ("Injected faults and the alerts they raised", d.alerted_faults(run, summary)),
                        ("Latency, ingest to ClickHouse row", summary["latency"])]:
        click.secho(f"\n{title}", bold=True)
        print_table(rows)
    flush_tracing()
    if json_out:
        with open(json_out, "w") as fh:
            json.dump({"summary": summary, "sent_readings": run.report.readings,
                       "truth": [w.to_dict() for w in run.truth]}, fh, indent=2, default=str)
    url, user, password = d.board_login(s)
    click.secho("\nMaintenance board", bold=True)
    click.echo(f"  {url}  (log in as {user!r}, password {password!r}; more users: "
               "`plantstream board add-user NAME --tenant demo`)")
    click.echo("\nThe stack is still running: `plantstream status`, `plantstream alerts list`, "
               "`plantstream sql`; stop it with `make down`.")


commands = [demo]
