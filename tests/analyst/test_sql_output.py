"""`plantstream sql` on the real embedded engine (the CLI opens the archive itself): bytes
that are not UTF-8 and terminal escapes from gateway-controlled ids come out safely in
every format, refusals are one clear line, and an analyst token scopes the CLI too."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analyst_attacks import EVIL_MACHINE, EVIL_ORIGINAL_HEX, seed
from click.testing import CliRunner

from plantstream.cli.analyst import printable, sql, text_safe
from plantstream.db.clickhouse import connect
from plantstream.db.query import QueryRefused, analyst_dsn, open_target
from plantstream.errors import ConfigError
from plantstream.settings import Settings

ACME_TOKEN = "acme-analyst-token-0123456789"
ALL_TOKEN = "operator-token-0123456789abcdef"
ESCAPED_ORIGINAL = "\\xff\\x00\\xfe\\x1b[2j"  # table: control characters escaped too
ESCAPED_MACHINE = printable(EVIL_MACHINE)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sql-output")
    writer = connect(f"chdb://{root / 'clickhouse'}")
    seed(writer)
    (root / "analysts.yaml").write_text(f"tokens:\n  {ACME_TOKEN}: acme\n  {ALL_TOKEN}: '*'\n")
    yield root
    writer.close()


def run_sql(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str, token: str | None = ALL_TOKEN,
            tokens_file: bool = True) -> tuple[int, bytes, str]:
    monkeypatch.setenv("PLANTSTREAM_HOME", str(home))
    monkeypatch.setenv("PLANTSTREAM_CLICKHOUSE_URL", f"chdb://{home / 'clickhouse'}")
    monkeypatch.setenv("PLANTSTREAM_QUERY_PORT", "0")
    tokens = str(home / "analysts.yaml") if tokens_file else None
    for name, value in (("PLANTSTREAM_ANALYST_TOKENS_FILE", tokens), ("PLANTSTREAM_ANALYST_TOKEN", token)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(sql, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


def test_binary_and_escapes_in_table_format(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    query = "SELECT machine, original FROM rejected WHERE tenant = 'beta'"
    code, out, err = run_sql(home, monkeypatch, query)
    assert code == 0, err
    text = out.decode()
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text
    assert ESCAPED_MACHINE in text and "press\\x1b[31m1\\x1b]0;owned\\x07" in text
    assert "\\xff\\x00\\xfe\\x1b[2j" in text
    assert "(1 rows)" in err


def test_binary_in_json_csv_and_parquet(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    query = "SELECT machine, original FROM rejected WHERE tenant = 'beta'"
    code, out, err = run_sql(home, monkeypatch, query, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [{"machine": EVIL_MACHINE, "original": "\\xff\x00\\xfe\x1b[2j"}]
    assert b"\x1b" not in out  # JSON escapes it as \u001b

    code, out, err = run_sql(home, monkeypatch, query, "--format", "csv")
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out.decode()))) == [
        {"machine": EVIL_MACHINE, "original": "\\xff\x00\\xfe\x1b[2j"}]

    target = tmp_path / "rejected.parquet"
    code, out, err = run_sql(home, monkeypatch, query, "--format", "parquet", "--output", str(target))
    assert code == 0, err
    table = pq.read_table(target)
    assert table.column("original").to_pylist() == [bytes.fromhex(EVIL_ORIGINAL_HEX)]  # exact bytes kept
    assert table.column("machine").to_pylist() == [EVIL_MACHINE]


def test_the_reported_query_no_longer_crashes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for fmt in ("table", "json"):
        code, out, err = run_sql(home, monkeypatch, "SELECT original FROM rejected", "--format", fmt)
        assert code == 0, err
        assert out.decode().count("\\xff") == 3  # three rejected rows, each with the bad byte escaped


def test_refusals_are_one_clear_line(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_sql(home, monkeypatch, "SELECT 1 // '\nINTO OUTFILE 'x.csv' --'")
    assert code == 1 and err.strip() == \
        "error: INTO OUTFILE is refused; use --format csv|json|parquet --output FILE"
    assert not (tmp_path / "x.csv").exists()
    code, out, err = run_sql(home, monkeypatch, "SELECT * FROM file('/etc/passwd', 'LineAsString')")
    assert code == 1 and "file() is refused" in err and b"root:" not in out


def test_tokens_scope_the_cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    query = "SELECT tenant, count() AS n FROM readings GROUP BY tenant ORDER BY tenant"
    code, out, err = run_sql(home, monkeypatch, query, "--format", "json", token=ACME_TOKEN)
    assert code == 0 and json.loads(out) == [{"tenant": "acme", "n": 2}], err
    code, out, err = run_sql(home, monkeypatch, query, "--format", "json", token=ALL_TOKEN)
    assert code == 0 and json.loads(out) == [{"tenant": "acme", "n": 2}, {"tenant": "beta", "n": 1}], err
    code, out, err = run_sql(home, monkeypatch, query, token=None)
    assert code == 1 and "this archive needs an analyst token: set PLANTSTREAM_ANALYST_TOKEN" in err
    code, out, err = run_sql(home, monkeypatch, query, token="x" * 40)
    assert code == 1 and "unknown analyst token" in err
    code, out, err = run_sql(home, monkeypatch, query, "--format", "json", token=None, tokens_file=False)
    assert code == 0 and len(json.loads(out)) == 2, err  # no tokens file: one-tenant setup


def test_text_safe_and_printable_units() -> None:
    bad = pa.array([b"\xff ok", b"fine"], type=pa.binary()).view(pa.string())
    table = pa.table({"s": bad, "l": pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), bad),
                      "d": bad.dictionary_encode(), "good": ["a", "b"]})
    assert text_safe(table).to_pylist() == [
        {"s": "\\xff ok", "l": ["\\xff ok"], "d": "\\xff ok", "good": "a"},
        {"s": "fine", "l": ["fine"], "d": "fine", "good": "b"}]
    assert text_safe(table, keep_bytes=True).column("s").to_pylist() == [b"\xff ok", b"fine"]
    assert printable("a\x1b[31mb\u202ec\r\n\t\x9bé") == "a\\x1b[31mb\\u202ec\\r\\n\\t\\x9bé"
    assert printable("plain ünïcode") == "plain ünïcode"


def test_server_mode_never_uses_the_writers_credentials(home: Path) -> None:
    server = replace(Settings.from_env(), home=home, clickhouse_url="http://writer:s3cret@ch.example:8123/plant")
    with pytest.raises(ConfigError, match="set PLANTSTREAM_CLICKHOUSE_ANALYST_USER"):
        open_target(server)  # refused before any connection is tried
    analyst = replace(server, clickhouse_analyst_user="analyst", clickhouse_analyst_password="p@ss:w/rd")
    dsn = analyst_dsn(analyst)
    assert dsn == "http://analyst:p%40ss%3Aw%2Frd@ch.example:8123/plant" and "s3cret" not in dsn
    scoped = replace(analyst, analyst_tokens_file=str(home / "analysts.yaml"), analyst_token=ACME_TOKEN)
    with pytest.raises(QueryRefused, match="give each tenant its own analyst user with a row policy"):
        open_target(scoped)
