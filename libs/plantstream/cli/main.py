"""Entry point of the ``plantstream`` command.

Each command group lives in its own small module under ``plantstream.cli`` and exposes a
``commands`` list; heavy imports happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import importlib

import click

from plantstream import __version__

# Order is the order of `plantstream --help`.
COMMAND_MODULES = [
    "plantstream.cli.infra",     # broker, topics, db, schemas, kafka
    "plantstream.cli.services",  # run, services start|stop|status
    "plantstream.cli.gateway",   # gateway simulate|replay|send
    "plantstream.cli.assets",    # assets apply|list
    "plantstream.cli.alerts",    # alerts list|show|ack|resolve|silence
    "plantstream.cli.board",     # board (serve), board add-user
    "plantstream.cli.analyst",   # sql, report
    "plantstream.cli.deadletters",  # deadletters list|replay
    "plantstream.cli.bench",     # bench ...
    "plantstream.cli.status",    # status
    "plantstream.cli.demo",      # demo
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plantstream")
def cli() -> None:
    """plantstream: manufacturing data platform on Kafka and ClickHouse.

    Configuration comes from PLANTSTREAM_* environment variables (see README).
    """


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:  # a real missing dependency, not a module still to be written
            raise
        continue
    for _command in _module.commands:
        cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
