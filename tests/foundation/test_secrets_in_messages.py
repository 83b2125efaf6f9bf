"""A ClickHouse password in PLANTSTREAM_CLICKHOUSE_URL never reaches a message, a log line or
the terminal: the DSN is shown as ``scheme://***@host...`` (plantstream.db.clickhouse.redacted)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plantstream.cli.main import cli
from plantstream.db.clickhouse import connect, redacted
from plantstream.errors import PlantstreamError

SECRET = "s3cret-pw"
DSN = f"http://analyst:{SECRET}@127.0.0.1:1/default"  # nothing listens on port 1


@pytest.mark.parametrize(("url", "shown"), [
    (DSN, "http://***@127.0.0.1:1/default"),
    ("https://u:p@ch.example:8443/db?secure=1", "https://***@ch.example:8443/db?secure=1"),
    ("http://ch.example:8123/db", "http://ch.example:8123/db"),
    ("chdb:///var/lib/plantstream/clickhouse", "chdb:///var/lib/plantstream/clickhouse"),
    ("http://ch.example:8123/db?user=a@b", "http://ch.example:8123/db?user=a@b"),  # @ after the host
])
def test_redacted_hides_only_the_credentials(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_failed_connection_names_the_server_but_not_the_password() -> None:
    with pytest.raises(PlantstreamError) as err:
        connect(DSN)
    assert "127.0.0.1:1" in str(err.value) and SECRET not in str(err.value)
    assert err.value.__cause__ is None  # the driver's own exception (with the URL) is not chained


def test_a_wrong_scheme_is_reported_without_the_password() -> None:
    with pytest.raises(PlantstreamError) as err:
        connect(f"tcp://default:{SECRET}@127.0.0.1:9000")
    assert SECRET not in str(err.value) and "chdb:///" in str(err.value)


def test_db_migrate_against_an_unreachable_server_prints_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_CLICKHOUSE_URL", DSN)
    result = CliRunner().invoke(cli, ["db", "migrate"])
    assert result.exit_code != 0
    assert "127.0.0.1:1" in result.output and SECRET not in result.output
