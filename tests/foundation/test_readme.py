"""The README stays the user's map: every setting documented, the two commands shown."""

from __future__ import annotations

from pathlib import Path

from plantstream.settings import DOCUMENTED, markdown_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [name for name, _, _ in DOCUMENTED if f"| `{name}` |" not in README]
    assert missing == []


def test_configuration_table_is_the_generated_one() -> None:
    assert markdown_table() in README, "run `python -m plantstream.settings` and paste it into README.md"


def test_the_two_commands_are_shown() -> None:
    assert "make demo" in README and "make test" in README
