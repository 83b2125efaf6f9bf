"""The read-only gate in front of analyst SQL (pure logic)."""

from __future__ import annotations

import pytest

from plantstream.db.readonly import QueryRefused, check_read_only


@pytest.mark.parametrize("sql, statement", [
    ("SELECT 1;", "SELECT 1"),
    ("  with x AS (SELECT 1) SELECT * FROM x ;; -- done", "with x AS (SELECT 1) SELECT * FROM x"),
    ("SELECT ';' AS semi, 'it''s' AS q, `a;b` FROM t", "SELECT ';' AS semi, 'it''s' AS q, `a;b` FROM t"),
    ("/* c */ SHOW TABLES", "SHOW TABLES"),
    ("DESCRIBE readings", "DESCRIBE readings"),
    ("EXPLAIN SELECT 1", "EXPLAIN SELECT 1"),
    ("SELECT formatDateTime(now(), '%F')", "SELECT formatDateTime(now(), '%F')"),
])
def test_reading_statements_pass(sql: str, statement: str) -> None:
    assert check_read_only(sql) == statement


@pytest.mark.parametrize("sql, message", [
    ("INSERT INTO readings VALUES (1)", "INSERT is refused: analyst access is read-only"),
    ("drop table readings", "DROP is refused"),
    ("ALTER TABLE readings DELETE WHERE 1", "ALTER is refused"),
    ("SELECT 1; DROP TABLE readings", "one statement at a time"),
    ("SELECT 1 INTO OUTFILE '/tmp/x.csv'", "INTO OUTFILE is refused"),
    ("SELECT 1 FORMAT CSV", "a FORMAT clause is refused"),
    ("SELECT 'unterminated", "unterminated quote"),
    ("  ;  -- nothing", "no SQL given"),
])
def test_anything_else_is_refused_with_the_reason(sql: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        check_read_only(sql)
