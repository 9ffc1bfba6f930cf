"""Read-only user queries: ``personify sql`` and anything else that runs SQL a person wrote."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlglot import exp

from personify import clock
from personify.errors import UnsafeQueryError
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


_NOW_FUNCTIONS = frozenset(
    {
        "now",
        "sysdate",
        "getdate",
        "utc_timestamp",
        "transaction_timestamp",
        "statement_timestamp",
        "clock_timestamp",
        "get_current_timestamp",
    }
)
"""Spellings of "the current instant" that sqlglot leaves as plain function calls."""
_NOW_NODES: tuple[type[exp.Expr], ...] = (
    exp.CurrentTimestamp,
    exp.CurrentDatetime,
    exp.CurrentTimestampLTZ,
    exp.Localtimestamp,
    exp.UtcTimestamp,
    exp.Systimestamp,
)
_TODAY_NODES: tuple[type[exp.Expr], ...] = (exp.CurrentDate, exp.UtcDate)


def pin_time(query: exp.Expr) -> exp.Expr:
    """Replace ``CURRENT_DATE``/``CURRENT_TIMESTAMP``/``NOW()`` (and the other dialects' spellings:
    ``SYSDATE()``, ``GETDATE()``, ``UTC_TIMESTAMP()``, ``LOCALTIMESTAMP`` …) with literals of
    :func:`personify.clock.now`, so ``--now`` holds inside SQL too."""
    now = clock.now()

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, _TODAY_NODES):
            return exp.cast(
                exp.Literal.string(_today(now, node.this).isoformat()), exp.DataType.build("DATE")
            )
        if isinstance(node, _NOW_NODES) or (
            isinstance(node, exp.Anonymous) and node.name.lower() in _NOW_FUNCTIONS
        ):
            return exp.cast(exp.Literal.string(now.isoformat()), exp.DataType.build("TIMESTAMPTZ"))
        return node

    return query.transform(swap)


def _today(now: datetime, zone: exp.Expr | None) -> date:
    """The date at ``now`` — in the time zone named by ``CURRENT_DATE('America/New_York')``
    (BigQuery, Snowflake …) when there is one, else in UTC (the warehouse session's zone)."""
    if isinstance(zone, exp.Literal) and zone.is_string:
        try:
            return now.astimezone(ZoneInfo(zone.name)).date()
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise UnsafeQueryError(
                f"unknown time zone {zone.name!r} in CURRENT_DATE",
                hint="name an IANA zone, e.g. 'Europe/Paris' or 'America/New_York'",
            ) from e
    return now.date()


def run_user_query(
    wh: Warehouse,
    sql: str,
    *,
    dialect: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    names: Collection[str] = (),
    rewrite: Callable[[exp.Expr], exp.Expr] | None = None,
) -> QueryResult:
    """Check ``sql`` (one read-only SELECT, in ``dialect``, default the warehouse's), transpile it
    to the warehouse's dialect and run it read-only with a timeout and a row cap. ``names`` are
    more table names the query may read, which ``rewrite`` turns into tables of the warehouse
    (the project's ``relations:``)."""
    read = dialect or wh.dialect
    stmt: exp.Expr = check_select(sql, dialect=read, allowed={*wh.relations(), *names})
    if rewrite is not None:
        stmt = rewrite(stmt)
    pinned = pin_time(stmt)
    columns, rows, truncated = wh.query_user(
        wh.render(pinned), timeout_s=timeout_s, max_rows=max_rows
    )
    return QueryResult(pinned.sql(dialect=wh.dialect), columns, rows, truncated)
