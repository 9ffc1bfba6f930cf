"""Compare a source's rows with the warehouse's, in the warehouse engine.

The source's rows (already mapped and validated as a sync would store them) are staged — only
the key, the compared columns and a ``_pending`` flag; an Arrow view where the engine reads Arrow
in place (DuckDB), else a table loaded through Arrow and dropped after — and joined with the
stored rows of the same source by key (``FULL OUTER JOIN``; per column ``IS DISTINCT FROM``).
Only the discrepant keys and one boolean per column come back to Python: whole rows never do.

Which stored rows: those of the table the rows are stored in, with the same key — whichever
source wrote them last (a webhook may update an order a sync stored); a stored row is *missing
at the source* only when this source wrote it. ``customer_records`` keeps every version of a
person record per source: this source's latest version per ``record_id`` is compared. Columns
a sync sets itself (``received_at``, ``source``) and columns derived later (``customer_id``
filled by identity resolution) are not compared, because they are not in the source's rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from personify.warehouse import Warehouse
from personify.warehouse.base import quote
from personify.warehouse.migrations import create_table_sql
from personify.warehouse.schema import Column, Table

NOT_COMPARED: Final = frozenset({"received_at", "source"})
"""Columns a load sets itself: never compared."""
VERSIONED: Final = {"customer_records": ("record_id", "observed_at")}
"""Tables keeping versions: ``table → (key, version column)``; the latest version is compared."""
PENDING: Final = "_pending"
KEY_SEPARATOR: Final = "|"
_names = itertools.count(1)


@dataclass
class Discrepancy:
    """One key that differs."""

    key: str
    kind: str
    """``missing_in_warehouse``, ``missing_at_source`` or ``mismatch``."""
    fields: list[str] = field(default_factory=list)
    pending: bool = False


@dataclass
class Comparison:
    """One table of one source: source versus warehouse."""

    source_rows: int = 0
    warehouse_rows: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    """The columns compared (besides the key)."""


def key_columns(stored: Table) -> tuple[str, ...]:
    """The columns identifying one row of a source in ``stored``."""
    if stored.name in VERSIONED:
        return (VERSIONED[stored.name][0],)
    return tuple(k for k in stored.primary_key if k not in NOT_COMPARED)


def key_text(rows: pa.Table, keys: Sequence[str]) -> pa.ChunkedArray | pa.Array:
    """The rows' keys as text, as :func:`compare` reports them (``a|b`` for two columns)."""
    parts = [pc.cast(rows[k], pa.string()) for k in keys]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR)


def compare(
    wh: Warehouse,
    stored: Table,
    source: str,
    rows: pa.Table,
    pending: pa.Array | None = None,
    *,
    only_keys: bool = False,
) -> Comparison:
    """Compare ``rows`` (mapped like the sync maps them, for ``stored``) with what ``source``
    stored in ``stored``. ``pending``: per row, whether it changed at the source after the last
    sync (its difference is then not an error). ``only_keys``: compare only the stored rows of
    the keys in ``rows`` (nothing is missing at the source)."""
    keys = key_columns(stored)
    missing = [k for k in keys if k not in rows.column_names]
    if missing:
        raise ValueError(f"{stored.name}: the source's rows lack the key {', '.join(missing)}")
    version = VERSIONED.get(stored.name, ("", ""))[1]  # when a source saw it, not what it holds
    compared = [
        c
        for c in rows.column_names
        if c in stored.column_names and c not in keys and c not in NOT_COMPARED and c != version
    ]
    flags = pending if pending is not None else pa.array([False] * rows.num_rows, pa.bool_())
    data = rows.select([*keys, *compared]).append_column(PENDING, flags)
    name = f"_personify_reconcile_{next(_names)}_{id(data):x}"
    register = getattr(wh, "register", None)
    if register is not None:  # the engine reads Arrow in place (DuckDB): no copy at all
        with register(name, data):
            return _join(wh, stored, name, source, keys, compared, data.num_rows, only_keys)
    staging = Table(
        name,
        (*(stored.column(c) for c in (*keys, *compared)), Column(PENDING, "BOOLEAN", True, "")),
    )
    for sql in create_table_sql(wh, staging):
        wh.execute(sql, ())
    try:
        wh.load(staging, data)
        return _join(wh, stored, staging.name, source, keys, compared, data.num_rows, only_keys)
    finally:
        wh.execute(f"DROP TABLE IF EXISTS {quote(staging.name)}", ())


def _stored_rows(stored: Table, columns: Sequence[str]) -> tuple[str, int]:
    """SQL of the stored rows to compare (with ``_src``, the source that wrote each), and how
    many ``?`` (the source's name) it takes."""
    cols = ", ".join(quote(c) for c in columns)
    if stored.name in VERSIONED:  # versions are per source: the source's own latest one
        key, version = VERSIONED[stored.name]
        return (
            f"SELECT {cols}, source AS _src FROM (SELECT {cols}, source, row_number() OVER "
            f"(PARTITION BY {quote(key)} ORDER BY {quote(version)} DESC) AS _rn "
            f"FROM {quote(stored.name)} WHERE source = ?) AS v WHERE _rn = 1"
        ), 1
    # One row per key whichever source wrote it last (a webhook may have updated a synced
    # order): a key is missing only if no source stored it.
    return f"SELECT {cols}, source AS _src FROM {quote(stored.name)}", 0


def _join(
    wh: Warehouse,
    stored: Table,
    staging: str,
    source: str,
    keys: Sequence[str],
    compared: Sequence[str],
    source_rows: int,
    only_keys: bool = False,
) -> Comparison:
    cols = [*keys, *compared]
    on = " AND ".join(f"s.{quote(k)} = w.{quote(k)}" for k in keys)
    differs = [f"(s.{quote(c)} IS DISTINCT FROM w.{quote(c)})" for c in compared]
    key_sql = " || '|' || ".join(
        f"CAST(coalesce(s.{quote(k)}, w.{quote(k)}) AS VARCHAR)" for k in keys
    )
    first = quote(keys[0])
    stored_sql, marks = _stored_rows(stored, cols)
    if only_keys:
        same = " AND ".join(f"q.{quote(k)} = x.{quote(k)}" for k in keys)
        stored_sql = (
            f"SELECT * FROM ({stored_sql}) AS x WHERE EXISTS "
            f"(SELECT 1 FROM {quote(staging)} AS q WHERE {same})"
        )
    joined = f"FROM {quote(staging)} AS s FULL OUTER JOIN w ON {on}"
    only_w = f"(s.{first} IS NULL AND w._src = ?)"
    both = f"s.{first} IS NOT NULL AND w.{first} IS NOT NULL"
    mismatch = [f"({both} AND ({' OR '.join(differs)}))"] if differs else []
    where = " OR ".join([only_w, f"(w.{first} IS NULL AND s.{first} IS NOT NULL)", *mismatch])
    sql = (
        f"WITH w AS ({stored_sql}) "
        f"SELECT {key_sql} AS k, s.{first} IS NULL AS only_w, w.{first} IS NULL AS only_s, "
        f"coalesce(s.{PENDING}, FALSE) AS p"
        + "".join(f", {d} AS d{i}" for i, d in enumerate(differs))
        + f" {joined} WHERE {where} ORDER BY 1"
    )
    params = [source] * marks + [source]
    out = Comparison(source_rows=source_rows, compared=list(compared))
    for row in wh.fetch(sql, params):
        key, only_w, only_s, pending = row[0], row[1], row[2], bool(row[3])
        if only_w:
            out.discrepancies.append(Discrepancy(key, "missing_at_source"))
        elif only_s:
            out.discrepancies.append(Discrepancy(key, "missing_in_warehouse", pending=pending))
        else:
            fields = [c for c, d in zip(compared, row[4:], strict=True) if d]
            out.discrepancies.append(Discrepancy(key, "mismatch", fields, pending))
    # stored rows compared: the source's keys found, plus this source's rows it no longer has
    absent = sum(1 for d in out.discrepancies if d.kind == "missing_in_warehouse")
    extra = sum(1 for d in out.discrepancies if d.kind == "missing_at_source")
    out.warehouse_rows = source_rows - absent + extra
    return out
