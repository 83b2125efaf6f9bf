"""``plantstream assets``: publish the asset registry (YAML) and show what is published."""

from __future__ import annotations

from pathlib import Path

import click

from plantstream.cli.common import friendly_errors, print_table, settings


@click.group()
def assets() -> None:
    """The asset registry: machines, sensors, gateway tags, units, ranges and limits."""


def _current(s: object) -> list[dict]:
    """Every machine now on the compacted assets topic."""
    from plantstream.assets import current_machines

    return current_machines(s)  # type: ignore[arg-type]


@assets.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prune", is_flag=True,
              help="Also remove (tombstone) machines of the file's tenants that the file no longer lists.")
@friendly_errors
def apply(file: Path, prune: bool) -> None:
    """Check FILE and publish one record per machine to the assets topic (services follow live)."""
    from plantstream.assets import load_assets_file, publish_assets
    from plantstream.kafka import check_broker

    records = load_assets_file(file)
    s = settings()
    check_broker(s)
    remove: list[tuple[str, str, str]] = []
    if prune:
        listed = {(r["tenant"], r["site"], r["machine"]) for r in records}
        tenants = {r["tenant"] for r in records}
        remove = sorted((m["tenant"], m["site"], m["machine"]) for m in _current(s)
                        if m["tenant"] in tenants and (m["tenant"], m["site"], m["machine"]) not in listed)
    acked = publish_assets(s, records, remove=remove)
    click.echo(f"published {len(records)} machines"
               + (f", removed {len(remove)}: {', '.join('/'.join(m) for m in remove)}" if remove else "")
               + f" ({acked} records acknowledged)")


@assets.command("list")
@click.option("--tenant", default=None, help="Only this tenant's machines.")
@click.option("--sensors", "show_sensors", is_flag=True, help="One row per sensor instead of per machine.")
@friendly_errors
def list_assets(tenant: str | None, show_sensors: bool) -> None:
    """Show the machines (or sensors) now in the registry."""
    from plantstream.kafka import check_broker

    s = settings()
    check_broker(s)
    machines = sorted((m for m in _current(s) if tenant in (None, m["tenant"])),
                      key=lambda m: (m["tenant"], m["site"], m["machine"]))
    if show_sensors:
        print_table([{"tenant": m["tenant"], "site": m["site"], "machine": m["machine"],
                      "sensor": x["sensor"], "tag": x["tag"], "unit": x["unit"],
                      "gateway_unit": x["gateway_unit"],
                      "warning_high": x["warning_high"], "critical_high": x["critical_high"]}
                     for m in machines for x in m["sensors"]])
        return
    print_table([{"tenant": m["tenant"], "site": m["site"], "machine": m["machine"],
                  "type": m["machine_type"], "sensors": len(m["sensors"])} for m in machines])


commands = [assets]
