"""Analyst SQL on the real embedded engine: the attack table is refused with a clear message
and changes nothing, ordinary reading keeps working, the engine session itself is
readonly = 1 with limits it cannot lift, and a tenant-scoped session sees only its tenant's
rows in every table however the query reaches them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from analyst_attacks import ATTACKS, EVIL_MACHINE, ORDINARY, ROWS, seed
from clickhouse_connect.driver.client import Client

from plantstream.db import reports
from plantstream.db.clickhouse import connect
from plantstream.db.readonly import (
    LIMITS,
    AnalystSession,
    QueryFailed,
    QueryRefused,
    Scope,
    check_tokens,
    normalized_tokens,
)


class Archive:
    """A seeded embedded archive (one engine per process, so one per module) and its sessions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"chdb://{root / 'clickhouse'}"
        self.writer: Client = connect(self.url)
        seed(self.writer)
        self.every = AnalystSession(connect(self.url), Scope(None))
        self.acme = AnalystSession(connect(self.url), Scope("acme"))
        self.tables = sorted(t.split(".", 1)[1] for t in self.acme.tenant_tables)

    def state(self) -> dict[str, object]:
        """What an attack must not change: row counts, tables, the sessions' settings."""
        counts = {t: self.writer.command(f"SELECT count() FROM {t}") for t in self.tables}
        names = self.writer.command("SELECT groupArray(name) FROM (SELECT name FROM system.tables "
                                    "WHERE database = currentDatabase() ORDER BY name)")
        probe = ("SELECT getSetting('readonly') AS r, getSetting('max_memory_usage') AS m, "
                 "getSetting('max_execution_time') AS t")
        settings = [s.arrow(probe).to_pylist() for s in (self.every, self.acme)]
        return {"counts": counts, "tables": names, "settings": settings}

    def close(self) -> None:
        for client in (self.every, self.acme, self.writer):
            client.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    a = Archive(tmp_path_factory.mktemp("analyst-archive"))
    yield a
    a.close()


@pytest.fixture(scope="module")
def before(archive: Archive) -> dict[str, object]:
    return archive.state()


@pytest.mark.parametrize("case, sql, message", ATTACKS, ids=[a[0] for a in ATTACKS])
@pytest.mark.parametrize("scope", ["every-tenant", "tenant-acme"])
def test_attack_is_refused_and_changes_nothing(archive: Archive, before: dict[str, object], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, scope: str, case: str,
                                              sql: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)  # a relative OUTFILE would land here
    out = tmp_path / "written.out"
    session = archive.every if scope == "every-tenant" else archive.acme
    with pytest.raises(QueryRefused, match=message):
        session.arrow(sql.format(out=out))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert archive.state() == before


@pytest.mark.parametrize("sql, rows", ORDINARY, ids=[o[0][:40] for o in ORDINARY])
def test_ordinary_reading_works(archive: Archive, sql: str, rows: list[dict]) -> None:
    assert archive.every.arrow(sql).to_pylist() == rows


def test_show_describe_and_explain_work(archive: Archive) -> None:
    shown = {r["name"] for r in archive.every.arrow("SHOW TABLES").to_pylist()}
    assert {"readings", "readings_1m", "readings_1h", "rejected", "anomalies", "alerts",
            "notifications"} <= shown
    described = archive.every.arrow("DESCRIBE readings").to_pylist()
    assert described[0]["name"] == "tenant" and described[0]["type"] == "LowCardinality(String)"
    assert [r["name"] for r in archive.every.arrow("desc table rejected").to_pylist()][:2] == ["id", "tenant"]
    plan = [r["explain"] for r in archive.every.arrow("EXPLAIN SELECT count() FROM readings").to_pylist()]
    assert any("ReadFromMergeTree" in line or "ReadFromPreparedSource" in line or "Aggregating" in line
               for line in plan), plan


def test_the_engine_session_is_readonly_with_limits(archive: Archive) -> None:
    """Beneath the statement checks: the session's own settings refuse writes, setting changes
    and outside access, so a check that missed something would still hit the engine."""
    for session in (archive.every, archive.acme):
        limits = {k: v for k, v in LIMITS.items() if k.startswith("max_")}
        expected = {"readonly": 1, "allow_ddl": 0, **limits}
        for name, value in expected.items():
            got = session.arrow(f"SELECT toFloat64(getSetting('{name}')) AS v").column(0)[0].as_py()
            assert got == float(value), name
        raw = session.client
        for sql in ("SET readonly = 0", "SET max_memory_usage = 0",
                    "SELECT 1 SETTINGS max_execution_time = 0",
                    "SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT * FROM url('http://127.0.0.1:9/')",
                    "SELECT * FROM executable('id', 'TSV', 'x String')",
                    "INSERT INTO readings (tenant) VALUES ('x')",
                    "DROP TABLE readings", "SET additional_table_filters = {'readings': '1'}"):
            with pytest.raises(Exception, match="READONLY|readonly mode"):
                raw.raw_query(sql)


def test_the_statement_that_runs_is_the_engines_parse(archive: Archive) -> None:
    """Comments, heredocs and quoting resolved by ClickHouse's own lexer; the canonical text
    is what runs."""
    assert archive.every.check("select 1 /* /* */ */ AS x -- bye") == "SELECT 1 AS x"
    assert archive.every.check("SELECT $$a'b$$") == "SELECT 'a\\'b'"
    assert archive.every.check("  with x AS (SELECT 1) SELECT * FROM x ;") == \
        "WITH x AS (SELECT 1) SELECT * FROM x"


# Differential: for each text, does the ENGINE write a file (run raw on an unlocked session)?
# The gate must refuse exactly those, and let the others through.
DIFFERENTIAL = [
    "SELECT 1 // '\nINTO OUTFILE '{out}' --'",
    "SELECT '/* INTO OUTFILE ''{out}'' */' AS s",
    "SELECT 1 /* /* */ INTO OUTFILE '{out}' */ AS x",
    "SELECT 1 /* /* */ */ INTO OUTFILE '{out}'",
    "SELECT $$ INTO OUTFILE '{out}' $$ AS s",
    "SELECT $tag$ $$ $tag$ INTO OUTFILE '{out}'",
    "SELECT 1 # INTO OUTFILE '{out}'",
    "SELECT 1 #!INTO OUTFILE '{out}'",
    "SELECT 1 #\nINTO OUTFILE '{out}'",
    "SELECT 1 -- INTO OUTFILE '{out}'",
    "SELECT 1 --\nINTO OUTFILE '{out}'",
    "SELECT 'a\\' INTO OUTFILE ''{out}''' AS s",
    "SELECT 'a\\\\' INTO OUTFILE '{out}'",
    "SELECT `x INTO OUTFILE '{out}'` FROM (SELECT 1 AS `x INTO OUTFILE '{out}'`)",
    "SELECT \"y\" FROM (SELECT 1 AS \"y\") INTO OUTFILE '{out}'",
    "SELECT 1 AS x INTO OUTFILE '{out}'",
]


@pytest.mark.parametrize("sql", DIFFERENTIAL)
def test_gate_agrees_with_the_engine_on_what_writes_a_file(archive: Archive, tmp_path: Path,
                                                           sql: str) -> None:
    out = tmp_path / "engine.out"
    text = sql.format(out=out)
    try:
        archive.writer.raw_query(text)
    except Exception:  # noqa: BLE001 (a text the engine cannot run writes nothing either)
        pass
    engine_writes = out.exists()
    try:
        archive.every.arrow(text)
        gate_refuses = False
    except QueryRefused as exc:
        gate_refuses = "INTO OUTFILE is refused" in str(exc)
    assert gate_refuses == engine_writes, (text, engine_writes)


# Values, comments and hiding places that a lexer must read exactly as ClickHouse does, combined
# at random (fixed seed) around an INTO OUTFILE: the engine decides which texts write a file.
VALUES = ["1", "'it''s'", "'a\\'b'", "'/* x'", "'-- x'", "$$ ' $$", "$t$ $$ ' $t$", "'\\\\'", "1 AS `a'b`",
          "'#'", "'//'"]
COMMENTS = ["", "/* ' */", "/* /* ' */ */", "-- '\n", "# '\n", "#! '\n", "// '\n", "/* -- */", "/**/", "--\n"]
HIDING = ["{x}", "/* {x} */", "/* /* */ {x} */", "-- {x}\n", "// {x}\n", "# {x}\n", ", '{xq}'", ", $$ {x} $$",
          "/* */ {x}", "-- \n{x}", "#!\n{x}"]


def _random_texts(n: int) -> list[str]:
    rng = random.Random(12)
    texts = []
    for _ in range(n):
        x = "INTO OUTFILE '{out}'"
        hiding = rng.choice(HIDING).replace("{xq}", x.replace("'", "''")).replace("{x}", x)
        texts.append(f"SELECT {rng.choice(VALUES)} {rng.choice(COMMENTS)}, {rng.choice(VALUES)} "
                     f"{rng.choice(COMMENTS)} {hiding} {rng.choice(COMMENTS)}")
    return texts


@pytest.mark.parametrize("sql", _random_texts(80))
def test_gate_agrees_with_the_engine_on_random_texts(archive: Archive, tmp_path: Path, sql: str) -> None:
    test_gate_agrees_with_the_engine_on_what_writes_a_file(archive, tmp_path, sql)


def test_differential_corpus_has_both_answers(archive: Archive, tmp_path: Path) -> None:
    """The corpus above would be worthless if every text went one way."""
    written = 0
    corpus = DIFFERENTIAL + _random_texts(80)
    for i, sql in enumerate(corpus):
        out = tmp_path / f"{i}.out"
        try:
            archive.writer.raw_query(sql.format(out=out))
        except Exception:  # noqa: BLE001
            pass
        written += out.exists()
    assert 20 <= written <= len(corpus) - 20


def test_normalized_tokens_fail_closed() -> None:
    with pytest.raises(QueryRefused, match="cannot check"):
        normalized_tokens("SELECT 'a'")
    assert normalized_tokens("SELECT `a b`(?) FROM t") == ["SELECT", "`a b`", "(", "?", ")", "FROM", "T"]
    with pytest.raises(QueryRefused, match=r"file\(\) is refused"):
        check_tokens(normalized_tokens("SELECT `file`(?)"), Scope(None))


# ---- tenant scope -------------------------------------------------------------------------

def test_tenant_sees_only_its_rows_in_every_table(archive: Archive) -> None:
    assert set(archive.tables) >= {"readings", "readings_1m", "readings_1h", "rejected", "anomalies",
                                   "alerts", "notifications"}
    for table in archive.tables:
        every = {r["tenant"]: r["n"] for r in archive.every.arrow(
            f"SELECT tenant, count() AS n FROM {table} GROUP BY tenant").to_pylist()}
        assert set(every) == set(ROWS), table  # both tenants are there to be hidden
        for sql in (f"SELECT tenant, count() AS n FROM {table} GROUP BY tenant",
                    f"SELECT tenant, count() AS n FROM default.{table} GROUP BY tenant",
                    f"WITH x AS (SELECT * FROM {table}) SELECT tenant, count() AS n FROM x GROUP BY tenant",
                    f"SELECT tenant, count() AS n FROM (SELECT tenant FROM {table}) GROUP BY tenant",
                    f"SELECT tenant, count() AS n FROM (SELECT tenant FROM {table} UNION ALL "
                    f"SELECT tenant FROM {table} WHERE 0) GROUP BY tenant"):
            assert archive.acme.arrow(sql).to_pylist() == [{"tenant": "acme", "n": every["acme"]}], sql
        assert archive.acme.arrow(f"SELECT count() AS n FROM {table}").to_pylist() == [{"n": every["acme"]}]
        assert archive.acme.arrow(f"SELECT count() AS n FROM {table} WHERE tenant = 'beta'").to_pylist() == \
            [{"n": 0}]


def test_tenant_filter_holds_through_joins_subqueries_and_in(archive: Archive) -> None:
    acme = archive.acme
    assert acme.arrow("SELECT DISTINCT a.tenant AS a, b.tenant AS b FROM readings AS a "
                      "CROSS JOIN rejected AS b").to_pylist() == [{"a": "acme", "b": "acme"}]
    assert acme.arrow("SELECT (SELECT groupUniqArray(tenant) FROM alerts) AS t").to_pylist() == \
        [{"t": ["acme"]}]
    assert acme.arrow("SELECT count() AS n FROM numbers(10) WHERE toString(number) IN "
                      "(SELECT toString(count()) FROM anomalies WHERE tenant = 'beta')").to_pylist() == \
        [{"n": 1}]
    assert acme.arrow("SELECT groupUniqArray(tenant) AS t FROM (SELECT tenant FROM readings UNION ALL "
                      "SELECT tenant FROM notifications UNION DISTINCT SELECT tenant FROM readings_1h)"
                      ).to_pylist() == [{"t": ["acme"]}]
    assert acme.arrow("SELECT uniqExact(tenant) AS u, max(tenant) AS m FROM readings").to_pylist() == \
        [{"u": 1, "m": "acme"}]


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM system.parts", "system.parts is not readable with a token scoped to tenant 'acme'"),
    ("SELECT * FROM readings_1m_mv", "readings_1m_mv is not readable"),
    ("SELECT * FROM schema_migrations", "schema_migrations is not readable"),
    ("WITH x AS (SELECT * FROM system.tables) SELECT * FROM x", "system.tables is not readable"),
    ("SELECT * FROM readings WHERE tenant IN (SELECT name FROM system.databases)", "system.databases is not"),
    ("SHOW PROCESSLIST", "may use SHOW TABLES only"),
    ("EXPLAIN ESTIMATE SELECT * FROM readings", "EXPLAIN is refused for a token scoped"),
    ("DESCRIBE system.tables", "may DESCRIBE the archive tables only"),
])
def test_tenant_cannot_read_tables_without_a_tenant_column(archive: Archive, sql: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        archive.acme.arrow(sql)


def test_tenant_may_list_and_describe_archive_tables(archive: Archive) -> None:
    assert "readings" in {r["name"] for r in archive.acme.arrow("SHOW TABLES").to_pylist()}
    assert archive.acme.arrow("DESCRIBE alerts").to_pylist()[0]["name"] == "alert_id"


def test_bytes_and_escapes_come_back_as_stored(archive: Archive) -> None:
    row = archive.acme.arrow("SELECT machine, hex(original) AS h FROM rejected LIMIT 1").to_pylist()[0]
    assert row["machine"] == EVIL_MACHINE and row["h"] == "FF00FE1B5B326A"


def test_engine_errors_are_failures_not_refusals(archive: Archive) -> None:
    with pytest.raises(QueryFailed, match="nowhere"):
        archive.every.arrow("SELECT nonsense FROM nowhere")
    with pytest.raises(QueryFailed) as failed:  # the message quotes a gateway's id: escaped
        archive.every.arrow("SELECT toInt32(machine) FROM rejected")
    assert "press\\u001b[31m1" in str(failed.value) and "\x1b" not in str(failed.value)


CANNED = {"health": reports.health, "anomalous": reports.anomalous_sensors, "alerts": reports.alerts,
          "data-quality": reports.data_quality}


@pytest.mark.parametrize("tenant", [None, "acme"])
@pytest.mark.parametrize("name", sorted(CANNED))
def test_canned_reports_pass_the_gate_and_keep_to_their_tenant(archive: Archive, name: str,
                                                               tenant: str | None) -> None:
    """Regression: `report health --tenant X` failed (ClickHouse took the alias
    `any(tenant) AS tenant` for the column in WHERE). A session of its own: after the attack
    table, the shared session once answered the alerts report's parse with stray bytes (an
    open bug, see the notes)."""
    session = AnalystSession(connect(archive.url), Scope(None))
    try:
        table = session.arrow(CANNED[name](tenant))
    finally:
        session.close()
    assert table.num_columns > 0
    if name == "health":
        assert table.num_rows == (1 if tenant else len(ROWS))  # one machine per tenant was seeded
    if tenant is not None and "tenant" in table.column_names:
        assert set(table.column("tenant").to_pylist()) <= {tenant}
