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
@click.option("--sim-out", type=click.Path(path_type=Path),
              default=REPO_ROOT / "bench/results/anomaly_sim.json", show_default=True)
@friendly_errors
def anomaly_bench(data_dir: Path | None, out: Path, sim: bool, sim_out: Path) -> None:
    """SKAB outlier F1 / FAR / MAR, NAB score and speed; then the simulator's faults.

    The detector is the service's (warm-up and learning policy from PLANTSTREAM_ANOMALY_*
    for the simulator run; SKAB uses its README protocol: 400 warm-up rows).
    """
    from anomaly import skab

    argv = ["--out", str(out)] + (["--data-dir", str(data_dir)] if data_dir else [])
    skab.main(argv)
    if sim:
        from anomaly.config import detector_factory
        from anomaly.simeval import format_report, run_sim

        click.echo("\nfactory simulator (12 machines, 4 h at 1 s, 6 injected faults) ...")
        res = run_sim(detector_factory(settings()))
        click.echo(format_report(res))
        sim_out.parent.mkdir(parents=True, exist_ok=True)
        sim_out.write_text(json.dumps(res, indent=2))
        click.echo(f"wrote {sim_out}")


commands = [bench]
