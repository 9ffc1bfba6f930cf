"""Small helpers for the temporary tables identity and profiles work in."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import Column, Table

WRITES = ("customers", "identities", "identity_edges", "identity_nodes", "profile_observations")
"""Tables identity and profiles write with plain SQL, keeping their keys by construction: a
pass holds them all (:meth:`~personify.warehouse.base.Warehouse.hold`) from its start."""


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


PHONES = scratch("_phone_map", raw="VARCHAR", region="VARCHAR", e164="VARCHAR")
"""``(raw, region, e164)``: phone values SQL could not normalize, with the country written
beside them (``''`` when none), parsed in Python (:func:`phone_map`)."""


def phone_map(
    wh: Warehouse, values_sql: str, region: str | None, params: Sequence[object] = ()
) -> int:
    """(Re)create :data:`PHONES` from the distinct ``(raw, country)`` pairs ``values_sql``
    selects (``country`` ``''`` when none), each parsed once with ``phonenumbers`` — read in the
    country's region when it is an ISO code, else in ``region`` (``e164`` NULL when it is no
    number); returns how many are numbers."""
    from personify.identity.normalize import normalize_phone, phone_region

    rows = wh.fetch(values_sql, params)
    values, countries = [r[0] for r in rows], [r[1] for r in rows]
    parsed = [normalize_phone(v, phone_region(c or None, region)) for v, c in rows]
    schema = pa.schema([("raw", pa.string()), ("region", pa.string()), ("e164", pa.string())])
    data = pa.table({"raw": values, "region": countries, "e164": parsed}, schema=schema)
    temp_table(wh, PHONES, data)
    return sum(e is not None for e in parsed)
