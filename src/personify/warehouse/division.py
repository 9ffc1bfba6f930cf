"""Integer division as the query's own dialect means it, on every warehouse.

In PostgreSQL (and the other dialects whose ``/`` follows its operands' types: SQLite, T-SQL,
Redshift …) ``order_count / 2`` of a BIGINT is an integer division: 3 / 2 = 1. DuckDB's ``/`` is
always a float division: 1.5. sqlglot renders such a division on DuckDB as a truncated one only
when it knows both operands are integers, so :func:`type_divisions` tells it: the operand types
of each of the query's typed divisions, read from the warehouse's schema (tables and views), on
a qualified copy of the query — the query itself is left as written. A typed division whose
operand types the schema does not say (a column of the project's own ``relations:``) is decided
on DuckDB when it runs (:func:`runtime_typed`).
"""

from __future__ import annotations

import functools
import logging

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from personify.warehouse.schema import TABLES, VIEWS

log = logging.getLogger(__name__)


@functools.cache
def _schema() -> MappingSchema:
    """Column types of the public tables and views (the views' read from their SELECT)."""
    schema = MappingSchema(
        {t.name: {c.name: c.type for c in t.columns} for t in TABLES}, dialect="duckdb"
    )
    for name, ddl in VIEWS.items():
        create = sqlglot.parse_one(ddl, read="duckdb")
        select = create.expression
        if not isinstance(select, exp.Query):
            continue
        typed = annotate_types(qualify(select, schema=schema, dialect="duckdb"), schema=schema)
        columns = {s.alias_or_name: s.type.sql("duckdb") for s in typed.selects if s.type}
        schema.add_table(name, columns, dialect="duckdb")
    return schema


def annotated(query: exp.Query, dialect: str) -> exp.Query | None:
    """A qualified copy of ``query`` (in ``dialect``) with sqlglot's types, the columns' read
    from the warehouse's schema (a column it does not know, of a ``relations:`` table, is
    UNKNOWN); None when sqlglot cannot type it. Its nodes come in the order of the query's."""
    try:
        schema = _schema()
        copy = qualify(
            query.copy(),
            schema=schema,
            dialect=dialect,
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
        return annotate_types(copy, schema=schema)
    except Exception as e:  # a query sqlglot cannot type is left as it is
        log.debug(
            "cannot type a query (%s): left as written", type(e).__name__
        )  # (no SQL: literals may be personal)
        return None


def type_divisions(query: exp.Query, dialect: str) -> exp.Query:
    """``query`` (in ``dialect``) with the operand types of its typed divisions annotated, in
    place; nothing to do for dialects whose ``/`` always divides as floats."""
    if not Dialect.get_or_raise(dialect).TYPED_DIVISION:
        return query
    divisions = [d for d in query.find_all(exp.Div) if d.args.get("typed")]
    if not divisions:
        return query
    copy = annotated(query, dialect)
    if copy is None:
        return query
    typed = [d for d in copy.find_all(exp.Div) if d.args.get("typed")]
    if len(typed) == len(divisions):
        for mine, known in zip(divisions, typed, strict=True):
            mine.left.type = _as_dialect_types(known.left, dialect)
            mine.right.type = _as_dialect_types(known.right, dialect)
    return query


_NUMERIC_SUMS: frozenset[str] = frozenset({"postgres"})
"""Dialects whose ``SUM`` of a BIGINT is a NUMERIC (PostgreSQL: no overflow), which sqlglot
types as a BIGINT: ``SUM(order_count) / COUNT(*)`` is 1.5 there, not 1."""


def _as_dialect_types(operand: exp.Expr, dialect: str) -> exp.DataType | None:
    """The type ``dialect`` gives ``operand`` where sqlglot's annotation says otherwise."""
    if dialect in _NUMERIC_SUMS and _numeric_sum(operand):
        return exp.DataType.build("DECIMAL")
    return operand.type


def _numeric_sum(node: exp.Expr) -> bool:
    """Whether ``node`` is a NUMERIC in PostgreSQL for holding a ``SUM`` of BIGINTs where
    sqlglot says BIGINT: the sum itself, or as a window (``SUM(x) OVER ()``), with a ``FILTER``,
    in ``COALESCE(SUM(x), 0)``, a ``CASE`` or ``+ - *`` (PostgreSQL's NUMERIC wins over its
    integer operands; ``SUM(x) OVER () / COUNT(*) OVER ()`` was 4 on DuckDB, 4.5 there)."""
    if isinstance(node, exp.Paren | exp.Window | exp.Filter | exp.Neg):
        return _numeric_sum(node.this)
    if isinstance(node, exp.Sum):
        return node.this.type is not None and node.this.type.is_type(exp.DataType.Type.BIGINT)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul):
        return _numeric_sum(node.left) or _numeric_sum(node.right)
    if isinstance(node, exp.Coalesce):
        return any(_numeric_sum(e) for e in (node.this, *node.expressions))
    if isinstance(node, exp.Case):
        branches = [i.args["true"] for i in node.args.get("ifs") or ()]
        default = node.args.get("default")
        return any(_numeric_sum(b) for b in (*branches, *([default] if default else [])))
    return False


_INTEGER_NAMES: tuple[str, ...] = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)
"""What DuckDB's ``typeof()`` says of its integer types."""


def _unknown(kind: exp.DataType | None) -> bool:
    return kind is None or kind.is_type(exp.DataType.Type.UNKNOWN)


def runtime_typed(node: exp.Expr) -> exp.Expr:
    """For DuckDB (whose ``/`` always divides as floats): a typed division (PostgreSQL's …)
    whose operand types :func:`type_divisions` could not read from the schema — a column of a
    ``relations:`` table — becomes ``CASE WHEN both operands are integers THEN a // b ELSE a / b
    END``, decided by ``typeof()`` when it runs (``//`` truncates toward zero, as PostgreSQL's
    integer ``/``); any other node is returned as it is."""
    if not (isinstance(node, exp.Div) and node.args.get("typed")):
        return node
    if not (_unknown(node.left.type) or _unknown(node.right.type)):
        return node
    names = [exp.Literal.string(n) for n in _INTEGER_NAMES]

    def integer(operand: exp.Expr) -> exp.Expr:
        typeof = exp.Anonymous(this="TYPEOF", expressions=[operand.copy()])
        return exp.In(this=typeof, expressions=[n.copy() for n in names])

    both = exp.and_(integer(node.left), integer(node.right))
    whole = exp.IntDiv(this=node.left.copy(), expression=node.right.copy())
    floats = exp.Div(this=node.left.copy(), expression=node.right.copy())
    return exp.Case(ifs=[exp.If(this=both, true=whole)], default=floats)
