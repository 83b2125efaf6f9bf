"""Entry point of the ``plantstream`` command. Subcommands live in small modules and import
their heavy dependencies lazily, so ``--help`` is instant."""

from __future__ import annotations

import click

from plantstream import __version__
from plantstream.cli.infra import broker, db, schemas, topics


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plantstream")
def cli() -> None:
    """plantstream: manufacturing data platform on Kafka and ClickHouse.

    Configuration comes from PLANTSTREAM_* environment variables (see README).
    """


for command in (topics, db, schemas, broker):
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
