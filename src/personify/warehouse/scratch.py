"""Temporary tables the set-wise stages (identity, profiles, privacy) work in: their shape,
creation with an Arrow bulk load, dropping, counting, and a first-by aggregate per dialect."""

from __future__ import annotations

import pyarrow as pa

from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import Column, Table


def scratch(name: str, **columns: str) -> Table:
    """A temporary table's shape: ``scratch("_x", a="BIGINT", b="VARCHAR")``."""
    return Table(name, tuple(Column(n, t) for n, t in columns.items()))


def drop(wh: Warehouse, *names: str) -> None:
    """Drop temporary tables if they exist."""
    for name in names:
        wh.execute(f"DROP TABLE IF EXISTS {quote(name)}")


def temp_table(wh: Warehouse, table: Table, data: pa.Table | None = None) -> None:
    """(Re)create ``table`` as a temporary table and bulk-load ``data`` into it (Arrow)."""
    drop(wh, table.name)
    cols = ", ".join(f"{quote(c.name)} {wh.column_type(c.type)}" for c in table.columns)
    wh.execute(f"CREATE TEMP TABLE {quote(table.name)} ({cols})", ())
    if data is not None and data.num_rows:
        wh.load(table, data)


def count(wh: Warehouse, name: str) -> int:
    """Rows in a table."""
    return int(wh.scalar(f"SELECT count(*) FROM {quote(name)}") or 0)


def first_by(wh: Warehouse, value: str, *order: str) -> str:
    """SQL aggregate: ``value`` of the row that sorts first by ``order`` (ties: smallest value).

    DuckDB's ``arg_min`` over a row of the keys is a plain hash aggregate (~3× cheaper than
    sorting each group's values into a list); other engines take ``array_agg(… ORDER BY …)[1]``.
    """
    if wh.dialect == "duckdb":
        return f"arg_min({value}, ({', '.join(order)}, {value}))"
    return f"(array_agg({value} ORDER BY {', '.join(order)}, {value}))[1]"
