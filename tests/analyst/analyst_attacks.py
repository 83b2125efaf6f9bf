"""The analyst attack table, the queries that must keep working, and a two-tenant archive to
run them on (shared by the engine, CLI and endpoint tests)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from plantstream.db.migrate import migrate

# Per tenant: rows written into every archive table (the rollups get theirs from readings).
ROWS = {"acme": 2, "beta": 1}
# A gateway-controlled id with a terminal escape, and bytes that are not UTF-8.
EVIL_MACHINE = "press\x1b[31m1\x1b]0;owned\x07"
EVIL_ORIGINAL_HEX = "ff00fe1b5b326a"
SETTINGS_REFUSAL = "a SETTINGS clause is refused: the analyst session's settings and limits are fixed"

# (id, SQL with {out} for a path that must never be written, what the refusal says)
ATTACKS: list[tuple[str, str, str]] = [
    # the report of the user who found the holes
    ("outfile-after-slash-slash-comment", "SELECT 1 // '\nINTO OUTFILE '{out}' --'",
     "INTO OUTFILE is refused"),
    ("file-table-function", "SELECT * FROM file('/etc/passwd', 'LineAsString')", r"file\(\) is refused"),
    ("file-scalar-function", "SELECT file('/etc/passwd')", r"file\(\) is refused"),
    ("url-table-function", "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
     r"table function url\(\) is refused"),
    ("settings-lift-memory", "SELECT count() FROM readings SETTINGS max_memory_usage = 0", SETTINGS_REFUSAL),
    # other ways out of the archive
    ("executable", "SELECT * FROM executable('id', 'TSV', 'x String')", r"table function executable\(\)"),
    ("remote", "SELECT * FROM remote('127.0.0.1:9000', system.one)", r"table function remote\(\)"),
    ("s3", "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', 'CSV')", r"table function s3\(\)"),
    ("merge-past-row-filters", "SELECT * FROM merge('default', '^readings$')", r"table function merge\(\)"),
    ("cluster", "SELECT * FROM cluster('default', system.one)", r"table function cluster\(\)"),
    ("view", "SELECT * FROM view(SELECT 1)", r"table function view\(\)"),
    ("input", "SELECT * FROM input('a Int8')", r"table function input\(\)"),
    ("filesystem", "SELECT * FROM filesystem('/etc')", r"table function filesystem\(\)"),
    ("python-objects", "SELECT * FROM Python(settings)", r"table function python\(\)"),
    ("explain-filesystem", "EXPLAIN PLAN SELECT * FROM filesystem('/')", r"table function filesystem\(\)"),
    ("explain-merge", "EXPLAIN SELECT * FROM merge('default', '^r')", r"table function merge\(\)"),
    ("describe-url", "DESCRIBE TABLE url('http://127.0.0.1:9/', 'CSV')", r"table function url\(\)"),
    ("quoted-file-name", "SELECT * FROM `file`('/etc/passwd', 'LineAsString')", r"file\(\) is refused"),
    ("file-in-subquery", "SELECT * FROM (SELECT file('/etc/hostname') AS f)", r"file\(\) is refused"),
    # settings
    ("settings-readonly-0", "SELECT 1 SETTINGS readonly = 0", SETTINGS_REFUSAL),
    ("settings-readonly-2", "SELECT 1 SETTINGS readonly = 2, max_memory_usage = 0", SETTINGS_REFUSAL),
    ("settings-in-subquery", "SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 0)", SETTINGS_REFUSAL),
    ("settings-row-filter-off", "SELECT count() FROM readings SETTINGS additional_table_filters = {{}}",
     SETTINGS_REFUSAL),
    ("set", "SET max_memory_usage = 0", "SET is refused: analyst access is read-only"),
    ("set-readonly", "set readonly = 0", "SET is refused"),
    ("use", "USE system", "USE is refused"),
    # scripts
    ("multi-statement", "SELECT 1; DROP TABLE readings", "one statement at a time"),
    ("multi-statement-insert", "SELECT 1;\nINSERT INTO readings (tenant) VALUES ('x')",
     "one statement at a time"),
    ("multi-statement-after-comment", "SELECT 1 /* ; */; SELECT 2", "one statement at a time"),
    ("multi-statement-after-string", "SELECT ';'; TRUNCATE TABLE readings", "one statement at a time"),
    # statements that are not reading
    ("system", "SYSTEM STOP MERGES", "SYSTEM is refused"),
    ("system-flush", "SYSTEM FLUSH LOGS", "SYSTEM is refused"),
    ("kill-query", "KILL QUERY WHERE 1", "KILL is refused"),
    ("insert", "INSERT INTO readings (tenant) VALUES ('x')", "INSERT is refused"),
    ("insert-select", "INSERT INTO readings SELECT * FROM readings", "INSERT is refused"),
    ("insert-into-function-file", "INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1", "INSERT is refused"),
    ("alter", "ALTER TABLE readings DELETE WHERE 1", "ALTER is refused"),
    ("alter-settings", "ALTER TABLE readings MODIFY TTL toDateTime(ts)", "ALTER is refused"),
    ("drop", "DROP TABLE readings", "DROP is refused"),
    ("create", "CREATE TABLE x (a Int8) ENGINE = Memory", "CREATE is refused"),
    ("create-view-file", "CREATE VIEW v AS SELECT * FROM file('/etc/passwd')", "CREATE is refused"),
    ("truncate", "TRUNCATE TABLE readings", "TRUNCATE is refused"),
    ("optimize", "OPTIMIZE TABLE readings FINAL", "OPTIMIZE is refused"),
    ("attach", "ATTACH TABLE readings", "ATTACH is refused"),
    ("detach", "DETACH TABLE readings", "DETACH is refused"),
    ("rename", "RENAME TABLE readings TO r2", "RENAME is refused"),
    ("delete", "DELETE FROM readings WHERE 1", "DELETE is refused"),
    ("grant", "GRANT ALL ON *.* TO default", "GRANT is refused"),
    ("explain-insert", "EXPLAIN INSERT INTO readings SELECT * FROM readings",
     "EXPLAIN is allowed for SELECT"),
    # INTO OUTFILE, spelled every way
    ("outfile", "SELECT 1 INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-lower", "select 1 into outfile '{out}'", "INTO OUTFILE is refused"),
    ("outfile-and-stdout", "SELECT 1 INTO OUTFILE '{out}' AND STDOUT", "INTO OUTFILE is refused"),
    ("outfile-truncate", "SELECT 1 INTO OUTFILE '{out}' TRUNCATE", "INTO OUTFILE is refused"),
    ("outfile-compressed", "SELECT 1 INTO OUTFILE '{out}' COMPRESSION 'gzip'", "INTO OUTFILE is refused"),
    ("outfile-block-comments", "SELECT 1 /* a */ INTO /* b */ OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-nested-comment", "SELECT 1 /* /* */ x */ INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-after-dash-comment", "SELECT 1 -- c\nINTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-after-hash-comment", "SELECT 1 # c\nINTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-newline", "SELECT 1 INTO\n\tOUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-after-heredoc", "SELECT $$it's$$ INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-after-escaped-quote", "SELECT 'a\\'b', 'c''d' INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-after-quoted-name", "SELECT 1 AS `a``b` INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-cte", "WITH x AS (SELECT 1) SELECT * FROM x INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-union", "SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-explain", "EXPLAIN SELECT 1 INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-show", "SHOW TABLES INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    ("outfile-describe", "DESCRIBE TABLE readings INTO OUTFILE '{out}'", "INTO OUTFILE is refused"),
    # files through a format
    ("outfile-parquet", "SELECT * FROM readings INTO OUTFILE '{out}' FORMAT Parquet",
     "INTO OUTFILE is refused"),
    ("insert-file-parquet", "INSERT INTO FUNCTION file('{out}', 'Parquet') SELECT * FROM readings",
     "INSERT is refused"),
    ("format-csv", "SELECT 1 FORMAT CSV", "a FORMAT clause is refused"),
    ("format-native", "SELECT * FROM readings FORMAT Native", "a FORMAT clause is refused"),
    ("format-template-file", "SELECT 1 FORMAT Template SETTINGS format_template_resultset = '/etc/passwd'",
     "a (SETTINGS|FORMAT) clause is refused"),
    ("format-after-comment", "SELECT 1 /* x */ FORMAT /* y */ TSV", "a FORMAT clause is refused"),
    # text that would swallow what the runner appends
    ("open-comment", "SELECT 1 /* INTO OUTFILE '{out}'",
     "ClickHouse cannot parse this SQL: Multiline comment"),
    ("open-string", "SELECT 'unterminated",
     "ClickHouse cannot parse this SQL: Single quoted string is not closed"),
    ("empty", "  ;  -- nothing", "no SQL given"),
]

# (SQL, the rows it returns) on the archive seeded below, with every tenant in scope.
ORDINARY: list[tuple[str, list[dict]]] = [
    ("SELECT count() AS n FROM readings", [{"n": 3}]),
    ("WITH t AS (SELECT tenant, count() AS n FROM readings GROUP BY tenant) SELECT * FROM t ORDER BY tenant",
     [{"tenant": "acme", "n": 2}, {"tenant": "beta", "n": 1}]),
    ("SELECT tenant FROM readings WHERE tenant IN (SELECT tenant FROM alerts) "
     "GROUP BY tenant ORDER BY tenant;",
     [{"tenant": "acme"}, {"tenant": "beta"}]),
    ("SELECT number FROM numbers(3)", [{"number": 0}, {"number": 1}, {"number": 2}]),
    ("SELECT 'it''s; -- not a comment' AS s", [{"s": "it's; -- not a comment"}]),
    ("SELECT /* /* nested */ still a comment */ 42 AS x", [{"x": 42}]),
    ("SELECT 1 // a comment in ClickHouse\n AS x", [{"x": 1}]),
    ("SELECT $$INTO OUTFILE 'x'$$ AS s", [{"s": "INTO OUTFILE 'x'"}]),
    ("SELECT 1 AS format", [{"format": 1}]),
    ("SELECT `into outfile` FROM (SELECT 2 AS `into outfile`)", [{"into outfile": 2}]),
    ("SELECT format('{}-{}', 'a', 'b') AS s  -- trailing comment", [{"s": "a-b"}]),
    ("EXISTS TABLE readings", [{"result": 1}]),
]


def seed(client: Client) -> None:
    """Migrate and write ROWS rows per tenant into every archive table (timestamps now)."""
    migrate(client, ttl_days=730)
    tables = [r[0] for r in client.query(
        "SELECT t.name FROM system.tables AS t INNER JOIN system.columns AS c ON c.table = t.name "
        "AND c.database = t.database WHERE t.database = currentDatabase() AND c.name = 'tenant' "
        "AND t.engine NOT LIKE '%View' AND t.name NOT LIKE 'readings\\_1_' ORDER BY t.name").result_rows]
    for table in tables:
        times = [r[0] for r in client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "AND type LIKE '%DateTime64%'", parameters={"t": table}).result_rows]
        extra = {"machine": "'m1'"}
        if table == "rejected":
            extra = {"machine": f"unhex('{EVIL_MACHINE.encode().hex()}')",
                     "original": f"unhex('{EVIL_ORIGINAL_HEX}')"}
        for tenant, n in ROWS.items():
            cols = ["tenant", *times, *extra]
            values = [f"'{tenant}'", *["now64(6)"] * len(times), *extra.values()]
            client.command(f"INSERT INTO {table} ({', '.join(cols)}) "
                           f"SELECT {', '.join(values)} FROM numbers({n})")
