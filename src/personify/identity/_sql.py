"""Small helpers for the temporary tables identity and profiles work in."""

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
