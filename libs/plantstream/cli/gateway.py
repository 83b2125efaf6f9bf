"""``plantstream gateway``: a simulated factory and a replayer that send like real gateways."""

from __future__ import annotations

from pathlib import Path

import click

from plantstream.cli.common import friendly_errors, settings

FORMATS = click.Choice(["avro", "json"])


@click.group()
def gateway() -> None:
    """Send gateway batches to Kafka: simulate a factory or replay recorded data."""


def _progress(report: object) -> None:
    click.echo(f"\r{report.line()}", nl=False, err=True)  # type: ignore[attr-defined]


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, val = v.partition("=")
        if not eq or not key or not val:
            raise click.BadParameter(f"{v!r}: expected {what}")
        out[key] = val
    return out


@gateway.command("simulate")
@click.option("--machines", default=8, show_default=True, help="Number of machines.")
@click.option("--machine-types", default="pump,cnc_spindle,compressor,conveyor_motor", show_default=True,
              help="Comma-separated machine types, assigned round-robin.")
@click.option("--rate", default=0.0, show_default=True,
              help="Readings/s paced to the wall clock (0: as fast as possible on a virtual clock).")
@click.option("--duration", default=600.0, show_default=True,
              help="Seconds of data: virtual time with --rate 0, wall-clock time otherwise.")
@click.option("--interval", default=1.0, show_default=True,
              help="Sampling interval in seconds with --rate 0 (with --rate it follows from the rate).")
@click.option("--batch-size", default=100, show_default=True, help="Most readings per batch (whole ticks).")
@click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same data.")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Inject a fault, e.g. bearing_wear:machine=pump-01,start=60,duration=600 (repeatable).")
@click.option("--faulty", default=0, show_default=True, help="Inject a random fault into N machines.")
@click.option("--format", "fmt", type=FORMATS, default="avro", show_default=True, help="Wire format.")
@click.option("--truth-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the ground-truth fault windows here (.json or .csv).")
@click.option("--assets-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the factory's asset registry (YAML) here.")
@click.option("--apply-assets", is_flag=True, help="Publish the factory's asset registry before sending.")
@click.option("--tenant", default="demo", show_default=True)
@click.option("--site", default="plant-1", show_default=True)
@click.option("--start", "start_us", type=int, default=None,
              help="Start of the virtual clock, microseconds since the epoch "
                   "(default: now - duration, or now with --rate).")
@click.option("--warm-start/--cold-start", default=True, show_default=True,
              help="Machines start in steady operation (a window of a running factory), or are "
                   "switched on at the start (speed and flow ramp up, motors warm up).")
@friendly_errors
def simulate(machines: int, machine_types: str, rate: float, duration: float, interval: float,
             batch_size: int, seed: int, faults: tuple[str, ...], faulty: int, fmt: str,
             truth_out: Path | None, assets_out: Path | None, apply_assets: bool, tenant: str, site: str,
             start_us: int | None, warm_start: bool) -> None:
    """Simulate a factory of pumps, CNC spindles, compressors and conveyors and send its
    gateway batches to the gateway topic."""
    from plantstream.gateway.registry import assets_yaml
    from plantstream.gateway.sender import send_batches
    from plantstream.gateway.simulator import Factory
    from plantstream.gateway.truth import write_ground_truth
    from plantstream.kafka import check_broker

    s = settings()
    types = [t.strip() for t in machine_types.split(",") if t.strip()]
    factory = Factory.build(machines, seed, machine_types=types,
                            tenant=tenant, site=site, faults=faults, faulty=faulty, horizon=duration,
                            start_us=start_us, interval=interval, rate=rate or None, warm_start=warm_start)
    if truth_out:
        write_ground_truth(truth_out, factory.ground_truth(),
                           {"seed": seed, "start_us": factory.start_us, "interval_us": factory.interval_us,
                            "duration_s": duration, "machines": machines})
        click.echo(f"ground truth: {len(factory.ground_truth())} fault windows -> {truth_out}")
    if assets_out:
        assets_out.parent.mkdir(parents=True, exist_ok=True)
        assets_out.write_text(assets_yaml(factory))
        click.echo(f"asset registry: {len(factory.machines)} machines -> {assets_out}")
    check_broker(s)
    if apply_assets:
        from plantstream.assets import publish_assets

        click.echo(f"asset registry: published {publish_assets(s, factory.assets())} machines")
    click.echo(f"simulating {len(factory.machines)} machines ({factory.sensors} sensors, "
               f"{factory.readings_per_second():,.0f} readings/s of {'wall' if rate else 'virtual'} time) "
               f"for {duration:g}s", err=True)
    timed = factory.timed_batches(duration, batch_size)
    batches = timed if rate else ((b, None) for b, _ in timed)
    from plantstream.telemetry import setup_tracing

    setup_tracing("gateway", s)  # each batch starts its trace here (gateway.send)
    report = send_batches(s, batches, fmt=fmt, progress=_progress)
    click.echo("", err=True)
    click.echo(("interrupted: " if report.interrupted else "sent ") + report.line())


@gateway.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--machine", required=True, help="Machine id the recording belongs to.")
@click.option("--tenant", default="demo", show_default=True)
@click.option("--site", default="plant-1", show_default=True)
@click.option("--gateway", "gateway_id", default=None, help="Gateway id (default gw-replay-MACHINE).")
@click.option("--time-column", default=None,
              help="Time column (default: datetime/timestamp/time/ts, else the first).")
@click.option("--time-unit", type=click.Choice(["s", "ms", "us"]), default="s", show_default=True,
              help="Unit of a numeric time column (since the epoch).")
@click.option("--sep", default=None, help="CSV separator (default: sniffed from the header).")
@click.option("--map", "maps", multiple=True, metavar="COL=TAG", help="Send column COL as gateway tag TAG.")
@click.option("--mapped-only", is_flag=True, help="Send only the columns named in --map.")
@click.option("--skip", "skips", multiple=True, metavar="COL[,COL]",
              help="Columns not to send, e.g. label columns: --skip anomaly,changepoint.")
@click.option("--speed", default=1.0, show_default=True,
              help="1: recorded pace, N: N times faster, 0: as fast as possible.")
@click.option("--batch-size", default=100, show_default=True, help="Most readings per batch (whole rows).")
@click.option("--format", "fmt", type=FORMATS, default="avro", show_default=True, help="Wire format.")
@click.option("--original-time", is_flag=True,
              help="Keep recorded timestamps (default: rebase so the replay happens now).")
@friendly_errors
def replay(file: Path, machine: str, tenant: str, site: str, gateway_id: str | None, time_column: str | None,
           time_unit: str, sep: str | None, maps: tuple[str, ...], mapped_only: bool, skips: tuple[str, ...],
           speed: float, batch_size: int, fmt: str, original_time: bool) -> None:
    """Replay a recorded CSV or Parquet FILE (time column + one column per sensor) as a gateway."""
    from plantstream.gateway.replay import prepare, read_table, replay_batches
    from plantstream.gateway.sender import send_batches
    from plantstream.kafka import check_broker

    s = settings()
    skip = [c.strip() for v in skips for c in v.split(",") if c.strip()]
    rec = prepare(read_table(file, sep), time_column=time_column, mapping=_pairs(maps, "COL=TAG"),
                  skip=skip, mapped_only=mapped_only, time_unit=time_unit)
    check_broker(s)
    click.echo(f"replaying {rec.times_us.size} rows x {len(rec.tags)} tags ({rec.readings} readings) "
               f"of {file.name} as {tenant}/{site}/{machine}", err=True)
    batches = replay_batches(rec, tenant=tenant, site=site, machine=machine, gateway=gateway_id,
                             batch_size=batch_size, speed=speed, rebase=not original_time)
    from plantstream.telemetry import setup_tracing

    setup_tracing("gateway", s)  # each batch starts its trace here (gateway.send)
    report = send_batches(s, batches, fmt=fmt, progress=_progress)
    click.echo("", err=True)
    click.echo(("interrupted: " if report.interrupted else "sent ") + report.line())


commands = [gateway]
