"""``plantstream board``: serve the maintenance board; ``board add-user`` manages its user file."""

from __future__ import annotations

import sys

import click

from plantstream.cli.common import friendly_errors, settings


@click.group(invoke_without_command=True)
@click.pass_context
@friendly_errors
def board(ctx: click.Context) -> None:
    """Serve the maintenance board in the foreground (PLANTSTREAM_BOARD_ADDRESS, default
    127.0.0.1:8126); the archival service and the broker must be running."""
    if ctx.invoked_subcommand is None:
        from board.service import main

        main()


@board.command("add-user")
@click.argument("name")
@click.option("--tenant", required=True, help="The one tenant whose alerts this user sees and acts on.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@friendly_errors
def add_user(name: str, tenant: str, password_stdin: bool) -> None:
    """Add NAME to the board's user file (or set a new password), stored as a salted scrypt hash."""
    from board.users import add_user as add

    s = settings()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    path = s.board_users or s.home / "board-users.yaml"
    add(path, name, tenant, password)
    click.echo(f"{name} (tenant {tenant}) saved in {path}")


commands = [board]
