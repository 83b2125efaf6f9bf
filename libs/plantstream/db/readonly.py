"""Analyst SQL, read-only by the engine's own rules.

Three layers, each the engine's own where it can be:

1. **The session.** Every analyst query runs on an engine session that first sets its limits
   (memory, time, result rows), the tenant's row filter (``additional_table_filters``) and
   then ``readonly = 1``. From then on ClickHouse itself refuses writes, DDL, ``SET``,
   ``SETTINGS`` clauses that change anything, and every table function that reaches outside
   (``file``, ``url``, ``s3``, ``remote``, ``executable``, ...): nothing a query says can lift
   that (``readonly = 2`` would let it).
2. **The parse.** ClickHouse parses the text (``formatQuerySingleLine``, the SQL passed as a
   hex query parameter, so it is never spliced into the statement that parses it): one
   statement or a refusal, and comments, heredocs and quoting are resolved by the engine's
   own lexer. What runs is that canonical text, never the analyst's original.
3. **What readonly does not cover** in the embedded engine: ``INTO OUTFILE`` (chDB writes the
   file even with ``readonly = 1``), ``KILL QUERY``, the scalar ``file()`` function, and the
   table functions ClickHouse counts as read-only but that bypass row filters (``merge``,
   ``view``, ``cluster``, ...). These are checked on the canonical text after the engine's
   ``normalizeQuery`` replaced every literal by ``?``, so no string can hide a keyword, and
   the table and function names of a SELECT are read from ``EXPLAIN QUERY TREE`` (the
   analyzer's resolution, CTEs and ``IN table`` included).

A tenant-scoped session (tokens: :mod:`plantstream.db.query`) may only read tables that have a
``tenant`` column, each filtered by the engine to the tenant's rows.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from plantstream.errors import PlantstreamError

# Limits a query cannot lift (readonly = 1 refuses any change of a setting).
MAX_MEMORY_BYTES = 4 << 30
MAX_EXECUTION_SECONDS = 300
MAX_RESULT_ROWS = 10_000_000
LIMITS: dict[str, str | int] = {
    "max_memory_usage": MAX_MEMORY_BYTES,
    "max_execution_time": MAX_EXECUTION_SECONDS,
    "max_result_rows": MAX_RESULT_ROWS,
    "result_overflow_mode": "throw",
    "allow_introspection_functions": 0,
    "allow_ddl": 0,
}

STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXPLAIN", "EXISTS")
EXPLAIN_KINDS = frozenset({"AST", "SYNTAX", "QUERY", "TREE", "PLAN", "PIPELINE", "ESTIMATE"})
# Table functions that only generate rows; every other one is refused here, whatever the
# engine's readonly rules say (merge/view/cluster read tables past the tenant filter).
GENERATING_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "values",
    "sqlstandardvalues", "null", "generaterandom", "primes"})
# Scalar functions that read files or models from the host.
HOST_FUNCTIONS = frozenset({"file", "catboostevaluate", "naivebayesclassifier",
                            "naivebayesclassifierwithprob", "naivebayesngrams"})
# System tables a tenant-scoped query may read besides its archive tables (one row, no data).
TENANT_SYSTEM_TABLES = frozenset({"system.one"})

READONLY_ERROR = 164
SYNTAX_ERROR = 62


class QueryRefused(PlantstreamError):
    """The SQL is not a single read-only statement this analyst may run."""


class QueryFailed(PlantstreamError):
    """ClickHouse could not run the query (syntax, unknown table, limit exceeded, ...)."""


@dataclass(frozen=True)
class Scope:
    """Whose rows a query may see: one tenant, or every tenant (``tenant is None``)."""

    tenant: str | None = None

    def describe(self) -> str:
        return "every tenant" if self.tenant is None else f"tenant {self.tenant!r}"


_NORMALIZED_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<placeholder>\?(?:\.\.)?)
  | (?P<other>[^\s`'"A-Za-z_?])
""", re.VERBOSE | re.DOTALL)


def normalized_tokens(normalized: str) -> list[str]:
    """Tokens of the engine's ``normalizeQuery`` output of a canonical statement: words
    upper-cased, quoted names as ``"`name`"``, literals are already ``?``. Anything else
    (a quote the engine left) fails closed."""
    out: list[str] = []
    pos = 0
    for m in _NORMALIZED_TOKEN.finditer(normalized):
        if m.start() != pos:
            break
        pos = m.end()
        kind = m.lastgroup
        if kind == "word":
            out.append(m.group().upper())
        elif kind != "space":
            out.append(m.group())
    if pos != len(normalized):
        raise QueryRefused("cannot check this statement (unexpected text after normalizing); "
                           "please report the query")
    return out


def _name(token: str) -> str:
    """A token as a function or table name: quoted names unquoted, lower case."""
    if token.startswith("`"):
        return token[1:-1].replace("\\`", "`").lower()
    return token.lower()


def check_tokens(tokens: list[str], scope: Scope, table_functions: frozenset[str] = frozenset()) -> str:
    """The statement kind (first word) if the tokens pass the checks readonly does not
    cover, else :class:`QueryRefused` saying why. ``table_functions``: names the engine knows
    as table functions only (no scalar function of that name), refused as calls."""
    if not tokens:
        raise QueryRefused("no SQL given; try: SELECT count() FROM readings")
    first = tokens[0]
    if first not in STATEMENTS:
        raise QueryRefused(
            f"{first} is refused: analyst access is read-only ({', '.join(STATEMENTS)}). "
            "Change data through the pipeline; manage tables with `plantstream db`.")
    if first == "EXPLAIN":
        i = 1
        while i < len(tokens) and tokens[i] in EXPLAIN_KINDS:
            i += 1
        while i + 2 < len(tokens) and tokens[i + 1] == "=":  # EXPLAIN indexes = 1, ... SELECT
            i += 4 if i + 3 < len(tokens) and tokens[i + 3] == "," else 3
        if i >= len(tokens) or tokens[i] not in ("SELECT", "WITH", "("):
            raise QueryRefused("EXPLAIN is allowed for SELECT queries only")
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "INTO" and nxt == "OUTFILE":
            raise QueryRefused("INTO OUTFILE is refused; use --format csv|json|parquet --output FILE")
        if tok == "FORMAT" and nxt and (nxt[0].isalpha() or nxt[0] == "`") and (
                i + 2 == len(tokens) or tokens[i + 2] == "SETTINGS"):
            raise QueryRefused("a FORMAT clause is refused; use --format table|csv|json|parquet instead")
        if tok == "SETTINGS" and i + 2 < len(tokens) and tokens[i + 2] == "=":
            raise QueryRefused("a SETTINGS clause is refused: the analyst session's settings and limits are "
                               "fixed (readonly = 1)")
        if nxt == "(" and (tok[0].isalpha() or tok[0] in "_`"):
            _check_call(_name(tok), table_functions)
    if scope.tenant is not None:
        if first == "SHOW" and tokens[1:2] != ["TABLES"]:
            raise QueryRefused(f"a token scoped to {scope.describe()} may use SHOW TABLES only")
        if first in ("EXPLAIN", "EXISTS"):
            raise QueryRefused(f"{first} is refused for a token scoped to {scope.describe()}")
    return first


def _check_call(name: str, table_functions: frozenset[str] = frozenset()) -> None:
    if name in HOST_FUNCTIONS:
        raise QueryRefused(f"{name}() is refused: analyst SQL reads the archive, not files on the host")
    if (name in _KNOWN_TABLE_FUNCTIONS or name in table_functions) and name not in GENERATING_TABLE_FUNCTIONS:
        raise QueryRefused(
            f"the table function {name}() is refused: analyst SQL reads the archive tables "
            "(row generators like numbers() are fine)")


# Table functions refused by name before anything is analyzed (EXPLAIN and DESCRIBE are not
# analyzed), together with every name the engine lists in system.table_functions that is not
# also a scalar function; in a SELECT the query tree allows GENERATING_TABLE_FUNCTIONS only.
_KNOWN_TABLE_FUNCTIONS = frozenset({
    "file", "url", "urlcluster", "s3", "s3cluster", "remote", "remotesecure", "executable", "input",
    "merge", "view", "viewifpermitted", "cluster", "clusterallreplicas", "eval", "fuzzjson", "fuzzquery",
    "mergetreeindex", "mergetreeanalyzeindexes", "mergetreeanalyzeindexesuuid", "mergetreecodecblockcounts",
    "mergetreeprojection", "mergetreetextindex", "mysql", "postgresql", "jdbc", "odbc", "hdfs",
    "azureblobstorage",
    "iceberg", "deltalake", "hudi", "sqlite", "mongodb", "redis", "dictionary", "loop", "gcs", "oss",
    "cosn", "filecluster", "timeseriesdata", "prometheusquery", "filesystem", "python", "arrowstream",
    "viewexplain",
})

_TABLE = re.compile(r"^\s*TABLE id: \d+(?:, alias: [^,]+)?, table_name: (\S+)\s*$", re.MULTILINE)
_TABLE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: \d+(?:, alias: [^,]+)?, table_function_name: (\S+)",
                             re.MULTILINE)
_FUNCTION = re.compile(r"^\s*FUNCTION id: \d+, function_name: (\S+?),", re.MULTILINE)


class AnalystSession:
    """One engine session for analyst SQL (its own clickhouse-connect client).

    ``lock=True`` (embedded engine): set limits, the tenant's row filter and ``readonly = 1``
    on the session, in that order. ``lock=False`` (a server's read-only analyst user): the
    user's profile must already say ``readonly = 1``; this only checks it.
    """

    def __init__(self, client: Client, scope: Scope, *, lock: bool = True) -> None:
        self.client = client
        self.scope = scope
        self.tenant_tables: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        database = self._value("SELECT currentDatabase() AS x")
        if scope.tenant is not None:
            self.tenant_tables = frozenset(self._tenant_tables(database))
        self.table_functions = frozenset(self._values(
            "SELECT lower(name) AS x FROM system.table_functions "
            "WHERE lower(name) NOT IN (SELECT lower(name) FROM system.functions)"))
        if lock:
            settings = dict(LIMITS)
            if scope.tenant is not None:
                settings["additional_table_filters"] = _filters(self.tenant_tables, scope.tenant)
            for name, value in settings.items():
                client.command(f"SET {name} = {_literal(value)}")
            client.command("SET readonly = 1")
        if self._value("SELECT getSetting('readonly') AS x") != "1":
            raise QueryRefused("the ClickHouse session for analyst SQL is not readonly = 1; give the analyst "
                               "user a profile with readonly = 1 (see README, For analysts)")

    def _tenant_tables(self, database: str) -> list[str]:
        """Tables (not views) of the archive database that have a ``tenant`` column."""
        sql = ("SELECT t.name AS x FROM system.tables AS t INNER JOIN system.columns AS c "
               "ON c.database = t.database AND c.table = t.name "
               "WHERE t.database = {db:String} AND c.name = 'tenant' AND t.engine NOT LIKE '%View' "
               "ORDER BY t.name")
        return [f"{database}.{name}" for name in self._values(sql, {"db": database})]

    def _values(self, sql: str, params: dict[str, str] | None = None) -> list[str]:
        raw = self.client.raw_query(f"SELECT hex(toString(x)) FROM ({sql})", parameters=params,
                                    fmt="TabSeparated")
        return [bytes.fromhex(line).decode() for line in raw.decode().splitlines()]

    def _value(self, sql: str, params: dict[str, str] | None = None) -> str:
        return self._values(sql, params)[0]

    def canonical(self, sql: str) -> str:
        """The statement as ClickHouse parsed it, one line, comments gone; or the refusal."""
        if not sql.strip():
            raise QueryRefused("no SQL given; try: SELECT count() FROM readings")
        try:
            return self._value("SELECT formatQuerySingleLine(unhex({sql:String})) AS x",
                               {"sql": sql.encode().hex()})
        except PlantstreamError:
            raise
        except Exception as exc:
            raise _parse_error(exc) from exc

    def check(self, sql: str) -> str:
        """The canonical statement if this session may run it, else :class:`QueryRefused`."""
        canonical = self.canonical(sql)
        normalized = self._value("SELECT normalizeQuery(unhex({sql:String})) AS x",
                                 {"sql": canonical.encode().hex()})
        kind = check_tokens(normalized_tokens(normalized), self.scope, self.table_functions)
        if kind in ("SELECT", "WITH"):
            self._check_tree(canonical)
        elif self.scope.tenant is not None and kind == "DESCRIBE":
            table = self._describe_target(canonical)
            if table not in self.tenant_tables:
                raise QueryRefused(f"a token scoped to {self.scope.describe()} may DESCRIBE the archive "
                                   f"tables only ({_short(self.tenant_tables)})")
        return canonical

    def _describe_target(self, canonical: str) -> str:
        tree = self._explain_ast(canonical)
        m = re.search(r"TableIdentifier (\S+)", tree) or re.search(r"Identifier (\S+)", tree)
        name = m.group(1) if m else ""
        if "." not in name:
            name = f"{self._value('SELECT currentDatabase() AS x')}.{name}"
        return name

    def _explain_ast(self, canonical: str) -> str:
        try:
            return self.client.raw_query(f"EXPLAIN AST {canonical}", fmt="TabSeparatedRaw").decode()
        except Exception as exc:
            raise _engine_error(exc) from exc

    def _check_tree(self, canonical: str) -> None:
        """Tables and functions as the analyzer resolved them (CTEs, subqueries, IN table)."""
        try:
            tree = self.client.raw_query(f"EXPLAIN QUERY TREE {canonical}", fmt="TabSeparatedRaw").decode()
        except Exception as exc:
            raise _engine_error(exc) from exc
        for name in _FUNCTION.findall(tree):
            _check_call(name.lower())
        for name in _TABLE_FUNCTION.findall(tree):
            _check_call(name.lower())
            if name.lower() not in GENERATING_TABLE_FUNCTIONS:
                raise QueryRefused(f"the table function {name}() is refused")
        if self.scope.tenant is not None:
            for table in _TABLE.findall(tree):
                if table not in self.tenant_tables and table not in TENANT_SYSTEM_TABLES:
                    raise QueryRefused(
                        f"{table} is not readable with a token scoped to {self.scope.describe()}: it may "
                        f"read the archive tables that have a tenant column ({_short(self.tenant_tables)})")

    def arrow(self, sql: str) -> pa.Table:
        """Check ``sql`` and run its canonical form; the result as Arrow (String columns as
        Arrow strings that may hold invalid UTF-8: see :func:`plantstream.cli.analyst`)."""
        with self._lock:
            statement = self.check(sql)
            try:
                body = self.client.raw_query(statement, fmt="ArrowStream")
            except Exception as exc:
                raise _engine_error(exc) from exc
        return pa.ipc.open_stream(body).read_all()

    def close(self) -> None:
        self.client.close()


def _filters(tables: frozenset[str], tenant: str) -> str:
    """``additional_table_filters`` for every tenant table, by full and short name."""
    condition = f"tenant = {_literal(tenant)}"
    keys = sorted({*tables, *(t.split(".", 1)[1] for t in tables)})
    return "{" + ", ".join(f"{_literal(k)}: {_literal(condition)}" for k in keys) + "}"


def _literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _short(tables: frozenset[str]) -> str:
    return ", ".join(sorted(t.split(".", 1)[-1] for t in tables))


def engine_message(exc: BaseException) -> str:
    """The engine's message without the ``Code: N. DB::Exception:`` noise, the version
    trailer and the echo of our own wrapper statement."""
    text = str(exc).strip()
    text = re.sub(r"(Code: \d+\. )?DB::Exception: ", "", text)
    text = re.sub(r" ?\(version [^)]*\)", "", text)
    text = re.split(r"\.? ?: In scope |\. In scope ", text, maxsplit=1)[0]
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"(\.? \([A-Z_]+\))+\.?$", "", line.strip())
    # the message may quote values (ids a gateway chose): no control characters to the terminal
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    m = re.search(r"Code: (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _parse_error(exc: BaseException) -> PlantstreamError:
    message = engine_message(exc)
    if "Multi-statements are not allowed" in message:
        return QueryRefused("one statement at a time, please (ClickHouse found more than one statement)")
    if "Empty query" in message:
        return QueryRefused("no SQL given; try: SELECT count() FROM readings")
    if _code(exc) == SYNTAX_ERROR:
        return QueryRefused(f"ClickHouse cannot parse this SQL: {message}")
    return _engine_error(exc)


def _engine_error(exc: BaseException) -> PlantstreamError:
    message = engine_message(exc)
    if _code(exc) == READONLY_ERROR:
        return QueryRefused(f"refused by ClickHouse (the analyst session is readonly = 1): {message}")
    return QueryFailed(message)
