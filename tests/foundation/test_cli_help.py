"""Every command and subcommand answers --help (user-facing habit), without a broker."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from plantstream.cli.main import cli


def _paths(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _paths(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


@pytest.mark.parametrize("path", list(_paths(cli)), ids=lambda p: " ".join(p) or "plantstream")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_core_commands_are_registered() -> None:
    assert {"topics", "db", "schemas", "broker", "run", "services"} <= set(cli.commands)


def test_schemas_check_passes_on_the_repository() -> None:
    result = CliRunner().invoke(cli, ["schemas", "check"])
    assert result.exit_code == 0 and "compatible" in result.output


def test_bad_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_PARTITIONS", "many")
    result = CliRunner().invoke(cli, ["db", "status"])
    assert result.exit_code == 1
    assert "PLANTSTREAM_PARTITIONS='many' is not a whole number" in result.output
