"""Guard for user-authored SQL: exactly one read-only SELECT over the warehouse's own relations.

Parsed with sqlglot and checked on the tree (never by string matching): one statement, a query
(SELECT / UNION / …), no DDL or DML anywhere inside it, no table functions (``read_csv``,
``read_parquet``, ``postgres_scan`` …), no functions that reach files, the network or the
server's settings, none whose error message is the value it was given (``error(first_name)``,
``'Ann'::regclass``: the masker cannot tell it from the engine's words), and tables only from an
allow-list. The backend then runs it read-only with a
timeout and a row cap.

Comments are dropped from the returned tree (what runs is only what sqlglot parsed, so a comment
can never smuggle a statement through), and refusals name the line and column where sqlglot saw
the offending node.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection, Iterator
from typing import Final

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect, Dialects
from sqlglot.errors import ParseError, TokenError

from personify.errors import UnsafeQueryError
from personify.warehouse.arithmetic import portable
from personify.warehouse.division import type_divisions
from personify.warehouse.timediff import complete_units

_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Into,
    exp.Copy,
    exp.Set,
    exp.Pragma,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.LoadData,
    exp.Attach,
    exp.Detach,
    exp.Lock,
)
_FORBIDDEN_PREFIXES = (
    "read_",
    "pg_",
    "lo_",
    "dblink",
    "sqlite_",
    "mysql_",
    "postgres_",
    "duckdb_",
    "pragma_",
    "http_",
    "txid_",
    "write_",
)
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "glob",
        "getenv",
        "current_setting",
        "set_config",
        "query",
        "query_table",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "json_scan",
        "csv_scan",
        "iceberg_scan",
        "delta_scan",
        "duckdb_settings",
        "duckdb_secrets",
        "duckdb_extensions",
        "load_extension",
        "httpfs",
        "version",
        "nextval",
        "setval",
        "setseed",
        "sleep",
        "sleep_ms",
        "benchmark",
        "load_file",
        "json_execute_serialized_sql",
        "json_serialize_sql",
        "json_deserialize_sql",
    }
)

_VALUE_IN_MESSAGE: Final = {
    # DuckDB: error(x) fails with x itself as the message; assert_true(c, x) with 'Assertion: x'
    "error": "its error message is its argument",
    "assert_true": "its error message is its argument",
    "raise_error": "its error message is its argument",  # Spark/Databricks, transpiled as is
    # PostgreSQL (DuckDB has the has_* too): the argument is looked up as an object's name, and
    # the error names it as one (relation "ann" does not exist) — a name the masker keeps
    "currval": "it looks its argument up as a relation, and an error names it",
    "row_security_active": "it looks its argument up as a relation, and an error names it",
}
"""Functions whose error message carries the value they were given, as written. A segment's
error reaches ``personify run``'s output, ``status`` and the logs, masked by
:func:`~personify.privacy.masking.mask_text`, which can only mask what the engine quotes as a
value: such a message would show a customer's data (``error(first_name)``)."""
_VALUE_IN_MESSAGE_PREFIXES: Final = ("has_", "to_reg")
"""``has_table_privilege(x, 'select')`` and the other ``has_*_privilege``: as ``currval``; and
PostgreSQL's ``to_regclass``, ``to_regtype`` … (a name they cannot parse fails naming it:
``improper relation name (too many dotted names): j.r.r.tolkien``, ``syntax error at or near
"Smith"``)."""
_SQL_RUNNING: Final = frozenset(
    {
        # PostgreSQL: they run the SQL text (or read the relation) they are given, whatever
        # the allow-list of tables says
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
    }
)
_OBJECT_TYPES: Final = frozenset(
    {
        "regclass",
        "regcollation",
        "regconfig",
        "regdictionary",
        "regnamespace",
        "regoper",
        "regoperator",
        "regproc",
        "regprocedure",
        "regrole",
        "regtype",
    }
)
"""PostgreSQL's object identifier types: a cast to one looks the value up as an object's name
and fails naming it as one (``'Ann'::regclass``: relation "ann" does not exist)."""


def _refused_function(name: str) -> str | None:
    """Why a function called ``name`` (lower case) is refused, or None."""
    if name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES):
        return "it reads files, the network, server settings or has side effects"
    if name in _SQL_RUNNING:
        return "it runs SQL given as text, past the tables a query may read"
    if name in _VALUE_IN_MESSAGE:
        return _VALUE_IN_MESSAGE[name] + ", so a customer's data would show unmasked"
    if name.startswith(_VALUE_IN_MESSAGE_PREFIXES):
        return "it looks its argument up as an object's name, and an error names it"
    return None


def _object_type(node: exp.DataType) -> str | None:
    """The object identifier type ``node`` names (``regclass`` …, also schema-qualified or
    quoted), if it names one."""
    if node.expressions:  # ARRAY<regclass>: the element type is a node of its own
        return None
    name = node.sql(dialect="postgres").lower().split(".")[-1].strip('"').strip()
    return name if name in _OBJECT_TYPES else None


def _where(e: ParseError | TokenError) -> tuple[int | None, int | None]:
    errors = getattr(e, "errors", None) or []
    if errors:
        return errors[0].get("line"), errors[0].get("col")
    return None, None


def _locate(node: exp.Expr, sql: str = "") -> tuple[int | None, int | None]:
    """Line and column where ``node`` (or the first descendant sqlglot placed) starts in
    ``sql``, if known."""
    for candidate in node.walk(bfs=False):
        meta = candidate._meta
        if meta and "line" in meta:
            start = meta.get("start")
            if isinstance(start, int) and 0 <= start < len(sql):
                line_start = sql.rfind("\n", 0, start) + 1
                return sql.count("\n", 0, start) + 1, start - line_start + 1
            return meta.get("line"), meta.get("col")
    return None, None


_COMMAND_WORDS = frozenset({"INSTALL", "ATTACH", "DETACH", "GRANT", "REVOKE", "TRUNCATE"})
_STATEMENT_START = re.compile(
    r"\b(drop|delete|insert|update|create|alter|merge|copy|attach|detach|install|load|pragma|"
    r"truncate|grant|revoke|set|replace)\b",
    re.IGNORECASE,
)


def _real_statement(node: exp.Expr, text: str) -> bool:
    """Whether a statement parsed from a comment is a real one, not prose that happens to parse
    ("Update: changed the threshold" parses as an UPDATE without SET)."""
    if isinstance(node, exp.Update):
        return bool(node.expressions)
    if isinstance(node, exp.Delete):
        return " from " in f" {text.lower()} "
    if isinstance(node, exp.Drop | exp.Create):
        return bool(node.args.get("kind"))
    if isinstance(node, exp.Insert):
        return node.args.get("expression") is not None
    if isinstance(node, exp.Command):
        return str(node.this).upper() in _COMMAND_WORDS
    return isinstance(node, _FORBIDDEN_NODES)


@contextlib.contextmanager
def _quiet_sqlglot() -> Iterator[None]:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hidden_statement(comment: str, dialect: str) -> str | None:
    """The kind of statement a comment holds (``DROP`` …), if it holds one."""
    text = comment.strip()
    if text.startswith("!"):  # MySQL runs /*! … */ as SQL
        return "MySQL executable comment"
    flat = text.replace("/*", " ").replace("*/", " ")
    for match in _STATEMENT_START.finditer(flat):
        piece = flat[match.start() :].split(";", 1)[0]
        try:
            with _quiet_sqlglot():  # prose makes sqlglot warn about falling back to Command
                parsed = sqlglot.parse(piece, read=dialect)
        except (ParseError, TokenError, ValueError):
            continue
        for node in (p for p in parsed if p is not None):
            if not isinstance(node, exp.Query) and _real_statement(node, piece):
                return node.key.upper()
    return None


def _check_comments(stmt: exp.Expr, dialect: str, what: str) -> None:
    for node in stmt.walk():
        for comment in node.comments or ():
            kind = _hidden_statement(comment, dialect)
            if kind:
                raise UnsafeQueryError(
                    f"a comment in the {what} hides a statement ({kind}): {comment.strip()[:60]!r}",
                    hint="remove it: comments are never run, and statements hidden in them are "
                    "refused",
                )


def strip_comments(tree: exp.Expr) -> exp.Expr:
    """Drop every comment from ``tree`` (in place) and return it."""
    for node in tree.walk():
        node.comments = None
    return tree


def dialect_names() -> list[str]:
    """The SQL dialects sqlglot reads, by name (``duckdb``, ``mysql``, ``postgres`` …)."""
    return sorted(d.value for d in Dialects if d.value)


def _refuse_bare_expression(sql: str, dialect: str, what: str) -> None:
    """Raise when ``sql`` does not start with a statement keyword: sqlglot then reads it as a
    bare expression (``SELEC broken`` is the column ``SELEC`` aliased ``broken``), which is a
    misspelt query, not a statement of another kind."""
    engine = Dialect.get_or_raise(dialect)
    try:
        tokens = engine.tokenize(sql)
    except TokenError:
        return
    if not tokens:
        return
    first = tokens[0]
    starts = {
        *engine.parser_class.STATEMENT_PARSERS,
        *engine.tokenizer_class.COMMANDS,
        TokenType.VALUES,
    }
    if first.token_type in starts:
        return
    col = max(first.col - len(first.text) + 1, 1)  # sqlglot's col is the token's last character
    raise UnsafeQueryError(
        f"cannot parse the {what} as {dialect} SQL: {first.text!r} does not start a statement",
        line=first.line,
        col=col,
        hint="a query starts with SELECT, WITH or FROM: check the spelling",
    )


def check_select(
    sql: str, *, dialect: str, allowed: Collection[str], what: str = "query"
) -> exp.Query:
    """Parse ``sql`` (in ``dialect``) and return it if it is one safe SELECT; else raise
    :class:`UnsafeQueryError` saying what is wrong and where."""
    try:
        Dialect.get_or_raise(dialect)
    except ValueError as e:  # "Unknown dialect 'x'. Did you mean y?"
        raise UnsafeQueryError(
            f"cannot read the {what}: {str(e).rstrip('.')}",
            hint=f"use one of: {', '.join(dialect_names())}",
        ) from None
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as e:
        line, col = _where(e)
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        raise UnsafeQueryError(
            f"cannot parse the {what} as {dialect} SQL: {first}",
            line=line,
            col=col,
            hint="check the syntax, or pass --dialect for the dialect it is written in",
        ) from None
    if not statements:
        raise UnsafeQueryError(f"the {what} is empty")
    if len(statements) > 1:
        raise UnsafeQueryError(
            f"the {what} holds {len(statements)} statements; exactly one SELECT is allowed"
        )
    stmt = statements[0]
    if not isinstance(stmt, exp.Query):
        _refuse_bare_expression(sql, dialect, what)
        kind = stmt.key.upper()
        raise UnsafeQueryError(
            f"only SELECT queries are allowed, not {kind}",
            hint="`personify sql` is read-only; changes go through the project's commands",
        )
    for node in stmt.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            line, col = _locate(node, sql)
            raise UnsafeQueryError(
                f"{node.key.upper()} is not allowed inside a read-only {what}", line=line, col=col
            )
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            why = _refused_function(name)
            if why:
                line, col = _locate(node, sql)
                raise UnsafeQueryError(
                    f"function {name}() is not allowed: {why}", line=line, col=col
                )
        if isinstance(node, exp.DataType) and (type_name := _object_type(node)):
            cast: exp.Expr = node
            while cast.parent is not None and not isinstance(cast, exp.Cast):
                cast = cast.parent  # (regclass[]: the element type is inside the array's)
            line, col = _locate(cast, sql)  # where the value cast starts
            raise UnsafeQueryError(
                f"a cast to {type_name} is not allowed: it looks the value up as an object's name, "
                "and an error would show it unmasked",
                line=line,
                col=col,
                hint="compare the value as text instead",
            )
    ctes = {c.alias_or_name.lower() for c in stmt.find_all(exp.CTE)}
    allowed_l = {a.lower() for a in allowed}
    for table in stmt.find_all(exp.Table):
        line, col = _locate(table, sql)
        if not isinstance(table.this, exp.Identifier):
            raise UnsafeQueryError(
                f"table functions are not allowed in a {what}: {table.this.sql(dialect)}",
                line=line,
                col=col,
                hint="query the warehouse's tables and views, e.g. customers, events, orders",
            )
        name = table.name.lower()
        if table.args.get("db") or table.args.get("catalog"):
            raise UnsafeQueryError(
                f"qualified table names are not allowed: {table.sql(dialect)}",
                line=line,
                col=col,
                hint="name the table alone, e.g. customers",
            )
        if name not in allowed_l and name not in ctes:
            raise UnsafeQueryError(
                f"unknown table {table.name!r}",
                line=line,
                col=col,
                hint="tables you can query: " + ", ".join(sorted(allowed)),
            )
    _check_comments(stmt, dialect, what)
    strip_comments(stmt)
    complete_units(stmt, dialect)  # MySQL's TIMESTAMPDIFF counts whole days, not midnights
    type_divisions(stmt, dialect)  # 3 / 2 = 1 in PostgreSQL, on DuckDB too
    return portable(stmt, dialect)  # x / 0 is NULL, ROUND(2.5) is 3, AVG a DOUBLE: on every engine
