"""Rule expressions: SQL over one profile, checked against an allow-list, typed and normalized.

A rule's ``when:`` (and each content variable) is parsed with sqlglot and walked node by node:
only column references to the profile (the ``customers`` table), literals, operators and the
functions below are allowed — no subqueries, no other tables, nothing the warehouse and the
per-profile evaluator (:mod:`personify.audiences.interpreter`) could disagree on:

- ``AND OR NOT``, ``= <> < <= > >=``, ``BETWEEN``, ``IN (…)``, ``IS [NOT] NULL``, ``IS TRUE``,
  ``LIKE 'pattern'`` (a literal without ``\\``), ``+ - * /``, ``CASE WHEN``, ``IF``/``IFF``;
- ``COALESCE`` (``IFNULL``, ``NVL``), ``ABS``, ``FLOOR``, ``CEIL``, ``GREATEST``, ``LEAST``,
  ``JSON_ARRAY_LENGTH(json_column)``;
- ``NOW()``/``CURRENT_TIMESTAMP``, ``CURRENT_DATE`` (they follow ``--now``), ``INTERVAL n UNIT``
  (second … year), ``DATE '…'``, ``TIMESTAMP '…'``.

Text compares only with ``=``/``<>``/``IN``/``LIKE`` (engines order text by different collations).
The returned tree is *normalized* so both paths compute the same thing: decimal literals become
``DOUBLE``, ``/`` is a float division giving NULL for a zero divisor, dates meeting timestamps or
intervals become UTC timestamps, every spelling of "now" becomes ``CURRENT_TIMESTAMP``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from personify.audiences import _leaves, _operators
from personify.audiences._kinds import ExpressionError, Handler, Kind, Typed
from personify.warehouse.schema import CUSTOMERS

__all__ = ["Expression", "ExpressionError", "Kind", "check_expression", "profile_columns"]

_NEUTRAL = {
    "VARCHAR": Kind.TEXT,
    "BIGINT": Kind.NUM,
    "DOUBLE": Kind.NUM,
    "BOOLEAN": Kind.BOOL,
    "TIMESTAMPTZ": Kind.TS,
    "DATE": Kind.DATE,
    "JSON": Kind.JSON,
}
_HANDLERS: dict[type[exp.Expr], Handler] = {**_leaves.HANDLERS, **_operators.HANDLERS}
ALLOWED_HINT = (
    "rule expressions may use profile columns, literals, AND/OR/NOT, comparisons, BETWEEN, IN, "
    "IS NULL, LIKE, + - * /, CASE, COALESCE, ABS, FLOOR, CEIL, GREATEST, LEAST, "
    "JSON_ARRAY_LENGTH, NOW(), CURRENT_DATE and INTERVAL"
)


def profile_columns() -> dict[str, Kind]:
    """The profile's columns (those of ``customers``) and their kinds."""
    return {c.name: _NEUTRAL.get(c.type, Kind.TEXT) for c in CUSTOMERS.columns}


@dataclass(frozen=True)
class Expression:
    """A checked, normalized expression over one profile."""

    source: str
    """As written."""
    tree: exp.Expr
    """Normalized: what both the warehouse and the per-profile evaluator run."""
    kind: Kind
    columns: tuple[str, ...]
    """Profile columns it reads, in order of first use."""

    @property
    def sql(self) -> str:
        """The normalized expression as DuckDB SQL (for explanations)."""
        return self.tree.sql(dialect="duckdb")


def check_expression(text: str, *, dialect: str, columns: Mapping[str, Kind]) -> Expression:
    """Parse ``text`` (in ``dialect``), check it against the allow-list and normalize it.

    Raises :class:`ExpressionError` with the line and column inside ``text``."""
    try:
        parsed = [e for e in sqlglot.parse(text, read=dialect) if e is not None]
    except (ParseError, TokenError) as e:
        errors = getattr(e, "errors", None) or [{}]
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        error = ExpressionError(f"cannot parse the expression: {first}")
        error.line, error.col = errors[0].get("line"), errors[0].get("col")
        raise error from None
    if len(parsed) != 1:
        raise ExpressionError(
            "write exactly one expression" if parsed else "the expression is empty"
        )
    checker = _Checker(columns)
    try:
        typed = checker.check(parsed[0])
    except ExpressionError as e:
        raise e.locate(text) from None
    for node in typed.node.walk():
        node.comments = None
    return Expression(text, typed.node, typed.kind, tuple(dict.fromkeys(checker.used)))


class _Checker:
    """Walks a parsed expression, dispatching each node to its check."""

    def __init__(self, columns: Mapping[str, Kind]) -> None:
        self.columns: Mapping[str, Kind] = {k.lower(): v for k, v in columns.items()}
        self.used: list[str] = []

    def check(self, node: exp.Expr) -> Typed:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise ExpressionError(f"{_describe(node)} is not allowed here", node, ALLOWED_HINT)
        return handler(self, node)

    def kinds(self, node: exp.Expr, *allowed: Kind, what: str) -> Typed:
        typed = self.check(node)
        if typed.kind not in (*allowed, Kind.NULL):
            names = " or ".join(k.value for k in allowed)
            raise ExpressionError(f"{what} needs {names}, not {typed.kind.value}", node)
        return typed

    def use(self, column: str) -> Kind:
        if column not in self.columns:
            close = difflib.get_close_matches(column, list(self.columns), n=1)
            raise KeyError(
                f"did you mean {close[0]}?"
                if close
                else "profile columns: " + ", ".join(sorted(self.columns))
            )
        self.used.append(column)
        return self.columns[column]


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Query | exp.Subquery | exp.Exists):
        return "a subquery"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}()"
    return node.key.upper()
