"""``plantstream bench ...``: benchmarks that print figures and save them as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from plantstream.cli.common import friendly_errors, settings
from plantstream.settings import REPO_ROOT


@click.group()
def bench() -> None:
    """Benchmarks (figures printed and saved under bench/results/)."""


@bench.command("anomaly")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="SKAB folder (default $PLANTSTREAM_SKAB_DIR or ../shared/datasets/skab).")
@click.option("--out", type=click.Path(path_type=Path), default=REPO_ROOT / "bench/results/anomaly_skab.json",
              show_default=True, help="SKAB result JSON.")
@click.option("--sim/--no-sim", default=True, show_default=True,
              help="Also score the detector on the factory simulator's ground truth.")
@click.option("--sim-seeds", default=None,
              help="Comma-separated simulator seeds (default: the held-out seeds, never used for tuning).")
@click.option("--sim-out", type=click.Path(path_type=Path),
              default=REPO_ROOT / "bench/results/anomaly_sim.json", show_default=True)
@friendly_errors
def anomaly_bench(data_dir: Path | None, out: Path, sim: bool, sim_seeds: str | None, sim_out: Path) -> None:
    """The shipped detector on SKAB (held-out by experiment group) and on the simulator.

    The detector is built by the service's own factory from the same PLANTSTREAM_ANOMALY_*
    settings (anomaly.config.detector_config), and the configuration measured is printed.
    SKAB: row-level F1/FAR/MAR, event-level figures and NAB score, for the shipped
    configuration and for a small grid tuned on one experiment group and reported on the
    other, both ways (protocol in anomaly.skab). Simulator: held-out seeds, same event figures.
    """
    from anomaly import skab
    from anomaly.config import detector_config

    config = detector_config(settings())
    try:
        res = skab.run_protocol(data_dir, config)
    except FileNotFoundError as exc:
        raise click.ClickException(f"{exc} (set PLANTSTREAM_SKAB_DIR or --data-dir)") from exc
    click.echo(skab.format_table(res))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    click.echo(f"wrote {out}")
    if sim:
        from anomaly.simeval import HELD_OUT_SEEDS, format_seeds, run_seeds

        seeds = [int(s) for s in sim_seeds.split(",")] if sim_seeds else list(HELD_OUT_SEEDS)
        click.echo(f"\nfactory simulator, held-out seeds {seeds} "
                   "(12 machines, 4 h at 1 s, 6 injected faults each) ...")
        sim_res = {"configuration": config.as_dict(), **run_seeds(config.factory(), seeds)}
        click.echo(format_seeds(sim_res))
        sim_out.parent.mkdir(parents=True, exist_ok=True)
        sim_out.write_text(json.dumps(sim_res, indent=2))
        click.echo(f"wrote {sim_out}")


commands = [bench]
