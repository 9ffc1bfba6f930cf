"""Read-only user queries: ``personify sql`` and anything else that runs SQL a person wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from personify import clock
from personify.warehouse.base import Warehouse
from personify.warehouse.safety import check_select

DEFAULT_MAX_ROWS = 10_000
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class QueryResult:
    sql: str
    """The SQL as run on the warehouse (after transpiling)."""
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def pin_time(query: exp.Expr) -> exp.Expr:
    """Replace ``CURRENT_DATE``/``CURRENT_TIMESTAMP``/``NOW()`` with literals of
    :func:`personify.clock.now`, so ``--now`` holds inside SQL too."""
    now = clock.now()

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.CurrentDate):
            return exp.cast(exp.Literal.string(now.date().isoformat()), exp.DataType.build("DATE"))
        if isinstance(node, exp.CurrentTimestamp | exp.CurrentDatetime) or (
            isinstance(node, exp.Anonymous) and node.name.lower() == "now"
        ):
            return exp.cast(exp.Literal.string(now.isoformat()), exp.DataType.build("TIMESTAMPTZ"))
        return node

    return query.transform(swap)


def run_user_query(
    wh: Warehouse,
    sql: str,
    *,
    dialect: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> QueryResult:
    """Check ``sql`` (one read-only SELECT, in ``dialect``, default the warehouse's), transpile it
    to the warehouse's dialect and run it read-only with a timeout and a row cap."""
    read = dialect or wh.dialect
    stmt = check_select(sql, dialect=read, allowed=wh.relations())
    pinned = pin_time(stmt)
    columns, rows, truncated = wh.query_user(
        wh.render(pinned), timeout_s=timeout_s, max_rows=max_rows
    )
    return QueryResult(pinned.sql(dialect=wh.dialect), columns, rows, truncated)
