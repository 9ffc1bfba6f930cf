"""Integer division as the query's own dialect means it, on every warehouse.

In PostgreSQL (and the other dialects whose ``/`` follows its operands' types: SQLite, T-SQL,
Redshift …) ``order_count / 2`` of a BIGINT is an integer division: 3 / 2 = 1. DuckDB's ``/`` is
always a float division: 1.5. sqlglot renders such a division on DuckDB as a truncated one only
when it knows both operands are integers, so :func:`type_divisions` tells it: the operand types
of each of the query's typed divisions, read from the warehouse's schema (tables and views), on
a qualified copy of the query — the query itself is left as written. A typed division whose
operand types the schema does not say (a column of the project's own ``relations:``) is typed
when the query is rendered, from the warehouse's catalog (:func:`catalog_typed`), and failing
that decided on DuckDB when it runs (:func:`runtime_typed`, a DOUBLE).

A typed division of numbers not both integers (PostgreSQL's NUMERIC ``SUM(x) / COUNT(*)``,
``x / 2.0``) divides as DOUBLEs on every engine: DuckDB cannot divide DECIMALs exactly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

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
    for division in divisions:  # (for a type the schema does not say: :func:`catalog_typed`)
        division.meta["dialect"] = dialect
    _mark(query, divisions)
    copy = annotated(query, dialect)
    if copy is None:
        return query
    for mine, known in _counterparts(divisions, copy):
        mine.left.type = _as_dialect_types(known.left, dialect)
        mine.right.type = _as_dialect_types(known.right, dialect)
        _settle(mine)
    return query


_SAME: str = "typed_division"
"""The meta key numbering a query's typed divisions, so that each is found on the qualified
copy sqlglot types — by position they are not: qualifying writes a division grouped on
(``GROUP BY 1``, an alias in ``GROUP BY``/``HAVING``) out again in place of the reference."""


def _mark(root: exp.Expr, nodes: list[Any], kind: type[exp.Expr] = exp.Div) -> None:
    """Number ``nodes`` (of ``root``, each a ``kind``) for :func:`_counterparts`, other
    ``kind`` nodes' numbers cleared."""
    for node in root.find_all(kind):
        node.meta.pop(_SAME, None)
    for i, node in enumerate(nodes):
        node.meta[_SAME] = i


def _counterparts(
    nodes: list[Any], copy: exp.Expr, kind: type[exp.Expr] = exp.Div
) -> list[tuple[Any, Any]]:
    """Each of ``nodes`` (numbered by :func:`_mark`) with its first copy in ``copy``."""
    found: dict[int, exp.Expr] = {}
    for node in copy.find_all(kind):
        number = node.meta.get(_SAME)
        if isinstance(number, int):
            found.setdefault(number, node)
    return [(d, found[i]) for i, d in enumerate(nodes) if i in found]


def _settle(division: exp.Div) -> None:
    """A typed division of numbers not both integers divides as DOUBLEs on every engine: DuckDB
    has no exact division of DECIMALs (its ``/`` of them is a DOUBLE), so PostgreSQL's NUMERIC
    quotient (``SUM(order_count) / COUNT(*)``, ``x / 2.0``) would be a DOUBLE on one engine, a
    NUMERIC on the other, and ``ROUND`` them differently (107 / 40 to 2.67 and 2.68)."""
    left, right = division.left.type, division.right.type
    if left is None or right is None:
        return
    numbers = exp.DataType.NUMERIC_TYPES
    if not (left.is_type(*numbers) and right.is_type(*numbers)):
        return  # (an interval / 2, or what sqlglot does not type: as written)
    integers = exp.DataType.INTEGER_TYPES
    if left.is_type(*integers) and right.is_type(*integers):
        return
    division.set("typed", False)
    dividend = division.left
    double = exp.DataType.Type.DOUBLE
    if not (isinstance(dividend, exp.Cast) and dividend.to.is_type(double)):
        # (sqlglot renders a NUMERIC's / as PostgreSQL's: a DOUBLE said, for every engine)
        cast = exp.cast(dividend.copy(), exp.DataType.build("DOUBLE"))
        cast.type = exp.DataType.build("DOUBLE")
        dividend.replace(cast)


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


UNTYPED_AVG = "personify:untyped_avg"
"""The meta key of an ``AVG`` whose argument's type the schema does not say (a ``relations:``
column; :func:`~personify.warehouse.arithmetic.portable` sets it to the query's dialect):
:func:`catalog_typed` reads its type from the catalog, and makes an average of numbers a
DOUBLE."""


def needs_catalog(expression: exp.Expr) -> bool:
    """Whether ``expression`` has what :func:`catalog_typed` types: a typed division, or an
    ``AVG`` of what the schema does not type."""
    return any(d.args.get("typed") for d in expression.find_all(exp.Div)) or any(
        a.meta.get(UNTYPED_AVG) for a in expression.find_all(exp.Avg)
    )


def as_double(avg: exp.Avg) -> None:
    """``avg`` cast to DOUBLE, in place — with its ``FILTER`` and ``OVER`` (cast as a whole);
    nothing when it is a DOUBLE already (checked twice, or written so)."""
    whole: exp.Expr = avg
    while isinstance(whole.parent, exp.Filter | exp.Window) and whole.parent.this is whole:
        whole = whole.parent
    parent = whole.parent
    if isinstance(parent, exp.Cast) and parent.to.is_type(exp.DataType.Type.DOUBLE):
        return
    whole.replace(exp.cast(whole.copy(), exp.DataType.build("DOUBLE")))


ColumnLookup = Callable[[Collection[tuple[str, str]]], Mapping[tuple[str, str], Mapping[str, str]]]
"""The warehouse catalog's column types (name → type, in the engine's words) of the tables
``(schema, table)`` asked for that it has."""


def catalog_typed(
    expression: exp.Expr, lookup: ColumnLookup, *, default_db: str, engine: str
) -> exp.Expr:
    """``expression`` (a copy, when anything changes) with the operand types of its typed
    divisions that :func:`type_divisions` could not read from Personify's schema — columns of
    the project's ``relations:`` or other tables of the team's own — read from the warehouse's
    catalog as it is now (``lookup``, in ``engine``'s words; an unqualified table is in
    ``default_db``). A division over integers is then one on DuckDB too, an integer (``CASE``
    by ``typeof()`` made it a DOUBLE: 3.0), and PostgreSQL's ``SUM`` of a BIGINT is a NUMERIC,
    divided as DOUBLEs on both (:func:`_settle`: ``SUM(x) / COUNT(*)`` is 4.5 for 9 / 2, where
    DuckDB divided its HUGEINT sum as an integer). What is still untyped is left to
    :func:`runtime_typed`. An ``AVG`` of such a column (:data:`UNTYPED_AVG`) that the catalog
    types as a number is cast to DOUBLE (PostgreSQL's AVG of a BIGINT or NUMERIC is a NUMERIC,
    DuckDB's a DOUBLE)."""
    untyped = [
        d
        for d in expression.find_all(exp.Div)
        if d.args.get("typed") and (_unknown(d.left.type) or _unknown(d.right.type))
    ]
    averages = [a for a in expression.find_all(exp.Avg) if a.meta.get(UNTYPED_AVG)]
    if not untyped and not averages:
        return expression
    ctes = {c.alias_or_name.lower() for c in expression.find_all(exp.CTE)}
    wanted: set[tuple[str, str]] = set()
    for table in expression.find_all(exp.Table):
        key = _table_key(table, default_db)
        if key is not None and (table.db or key[1] not in ctes | _KNOWN):
            wanted.add(key)
    if not wanted:
        return expression
    try:
        found = {(s.lower(), t.lower()): cols for (s, t), cols in lookup(wanted).items()}
    except Exception as e:  # (a catalog that cannot be read: decided when it runs)
        log.debug("cannot read the catalog's column types (%s)", type(e).__name__)
        return expression
    if not found:
        return expression
    first = untyped[0].meta.get("dialect") if untyped else averages[0].meta.get(UNTYPED_AVG)
    dialect = str(first or "duckdb")
    result = expression.copy()
    mine = [d for d in result.find_all(exp.Div) if d.args.get("typed")]
    _mark(result, mine)
    means = [a for a in result.find_all(exp.Avg) if a.meta.get(UNTYPED_AVG)]
    _mark(result, means, exp.Avg)
    copy = result.copy()
    mapping: dict[str, Any] = dict(_schema().mapping)
    for i, table in enumerate(list(copy.find_all(exp.Table))):
        key = _table_key(table, default_db)
        if key is None or key not in found or (not table.db and key[1] in ctes | _KNOWN):
            continue
        stand_in = f"__relation_{i}"
        mapping[stand_in] = _duckdb_types(found[key], engine)
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(exp.Table(this=exp.to_identifier(stand_in), alias=alias.copy()))
    try:
        schema = MappingSchema(mapping, dialect="duckdb")
        qualified = qualify(
            copy,
            schema=schema,
            dialect=dialect,
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
        typed_copy = annotate_types(qualified, schema=schema)
    except Exception as e:  # a query sqlglot cannot type: decided when it runs
        log.debug("cannot type a query (%s): left to the engine", type(e).__name__)
        return expression
    # the AVGs the catalog types as numbers, by number: a division _settle casts is copied
    # (and an AVG's cast copies the divisions in it), so they are found again after
    doubled = {
        avg.meta[_SAME]
        for avg, typed_avg in _counterparts(means, typed_copy, exp.Avg)
        if typed_avg.this.type is not None
        and typed_avg.this.type.is_type(*exp.DataType.NUMERIC_TYPES)
    }
    for div, typed in _counterparts(mine, typed_copy):
        if not (_unknown(div.left.type) or _unknown(div.right.type)):
            continue
        if _unknown(typed.left.type) or _unknown(typed.right.type):
            continue
        div.left.type = _as_dialect_types(typed.left, str(div.meta.get("dialect") or dialect))
        div.right.type = _as_dialect_types(typed.right, str(div.meta.get("dialect") or dialect))
        _settle(div)
    for avg in [a for a in result.find_all(exp.Avg) if a.meta.get(_SAME) in doubled]:
        if avg.meta.pop(UNTYPED_AVG, None):
            as_double(avg)
    return result


def _duckdb_types(columns: Mapping[str, str], engine: str) -> dict[str, str]:
    """``columns``' types in ``engine``'s words as DuckDB's (the schema's dialect); a type
    sqlglot does not read is left out (UNKNOWN)."""
    types: dict[str, str] = {}
    for name, kind in columns.items():
        try:
            types[name.lower()] = exp.DataType.build(kind, dialect=engine).sql("duckdb")
        except Exception as e:  # (USER-DEFINED, ARRAY …: not a number anyway)
            log.debug("a column type sqlglot does not read (%s): unknown", type(e).__name__)
    return types


_KNOWN: frozenset[str] = frozenset({t.name for t in TABLES} | set(VIEWS))
"""Personify's own tables and views: typed by :func:`_schema`."""


def _table_key(table: exp.Table, default_db: str) -> tuple[str, str] | None:
    if not isinstance(table.this, exp.Identifier):
        return None
    return ((table.db or default_db).lower(), table.name.lower())
