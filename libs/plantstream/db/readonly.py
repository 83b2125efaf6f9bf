"""The read-only gate in front of analyst SQL.

ClickHouse's own ``readonly`` setting refuses writes and DDL, but in the embedded engine it
lets ``INTO OUTFILE`` write files, and the engine runs every statement of a ``;``-separated
script. So before any query reaches the engine this gate insists on exactly one statement
that starts with a reading keyword and writes no file. It tokenizes (strings, quoted names
and comments are skipped), so a ``;`` inside a string literal is fine.
"""

from __future__ import annotations

import re

from plantstream.errors import PlantstreamError

ALLOWED_FIRST_WORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<semicolon>;)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


class QueryRefused(PlantstreamError):
    """The SQL is not a single read-only statement."""


def _tokens(sql: str) -> list[tuple[str, int, int]]:
    """Significant tokens (words upper-cased) with their start and end positions."""
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind == "word":
            out.append((m.group().upper(), m.start(), m.end()))
        elif kind == "other" and m.group() in "'\"`":
            raise QueryRefused("unterminated quote in the SQL; close the string or the quoted name")
        elif kind not in ("space", "comment"):
            out.append((m.group(), m.start(), m.end()))
    return out


def check_read_only(sql: str) -> str:
    """Return the statement without trailing ``;`` or comments, or raise :class:`QueryRefused`
    saying why (one statement, reading only, no FORMAT or INTO OUTFILE)."""
    tokens = _tokens(sql)
    while tokens and tokens[-1][0] == ";":
        tokens.pop()
    if not tokens:
        raise QueryRefused("no SQL given; try: SELECT count() FROM readings")
    words = [t for t, _, _ in tokens]
    if ";" in words:
        raise QueryRefused("one statement at a time, please (found ';' between statements)")
    if words[0] not in ALLOWED_FIRST_WORDS:
        raise QueryRefused(
            f"{words[0]} is refused: analyst access is read-only (SELECT, WITH, SHOW, DESCRIBE, "
            "EXPLAIN, EXISTS). Change data through the pipeline; manage tables with `plantstream db`.")
    for a, b in zip(words, words[1:], strict=False):
        if a == "INTO" and b == "OUTFILE":
            raise QueryRefused("INTO OUTFILE is refused; use --format csv|json|parquet --output FILE")
        if a == "FORMAT" and b[:1].isalpha():
            raise QueryRefused("a FORMAT clause is refused; use --format table|csv|json|parquet instead")
    return sql[tokens[0][1]:tokens[-1][2]]
