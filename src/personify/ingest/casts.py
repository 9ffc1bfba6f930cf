"""SQL expressions that type and check one field's values (run by the validation engine).

For field ``i`` of a batch, ``s{i}`` is the value as read and ``v{i}`` the value typed for the
target column. Text (CSV, JSON scalars, Parquet strings) is cast with ``TRY_CAST`` (a value that
does not cast becomes NULL and is reported); stored Parquet types are cast directly; nested values
become JSON text.
"""

from __future__ import annotations

from typing import Final

from personify.ingest.fields import Field
from personify.warehouse.base import quote

EXPECT: Final = {
    "BIGINT": "is not an integer",
    "DOUBLE": "is not a finite number",
    "BOOLEAN": "is not a boolean (true or false)",
    "DATE": "is not an ISO 8601 date (YYYY-MM-DD)",
    "TIMESTAMPTZ": "is not an ISO 8601 timestamp",
    "JSON": "is not valid JSON",
    "VARCHAR": "is not text",
}
"""What a value of each column type must look like (ends each ``invalid_type`` detail)."""


def value_sql(f: Field, i: int) -> str:
    """``v{i}``: the typed value, NULL when missing or not castable."""
    s, typ = f"s{i}", f.column.type
    if f.kind == "json":
        return f"NULLIF(CAST({s} AS VARCHAR), 'null')"
    if f.kind == "nested":
        if typ not in ("JSON", "VARCHAR"):
            return "NULL"
        return f"CAST(to_json({s}) AS VARCHAR)"
    if f.kind == "typed":
        if typ == "JSON":
            return f"CAST(to_json({s}) AS VARCHAR)"
        return f"CAST({s} AS VARCHAR)" if typ == "VARCHAR" else f"TRY_CAST({s} AS {typ})"
    if typ == "VARCHAR":
        return f"CASE WHEN {_nonblank(s)} THEN {s} END"
    if typ == "JSON":
        return f"CASE WHEN json_valid({s}) THEN {s} END"
    # surrounding blanks are fine: trim only when the plain cast fails
    return f"coalesce(TRY_CAST({s} AS {typ}), TRY_CAST(trim({s}) AS {typ}))"


def _nonblank(s: str) -> str:
    # Trim only values that start with a blank. The CASE matters: DuckDB evaluates both sides of
    # an AND/OR in a projection for every row (trimming every value: ~0.3 µs per value of a few
    # hundred bytes), but a CASE branch only for the rows that reach it.
    blank_led = f"starts_with({s}, ' ')"
    return f"coalesce(CASE WHEN {blank_led} THEN trim({s}) <> '' ELSE {s} <> '' END, false)"


def present_sql(f: Field, i: int) -> str:
    """True when the row has a value (empty and blank text count as missing)."""
    if f.kind == "text":
        return f"v{i} IS NOT NULL" if f.column.type == "VARCHAR" else _nonblank(f"s{i}")
    if f.kind == "json":
        return f"v{i} IS NOT NULL"
    return f"s{i} IS NOT NULL"


def valid_sql(f: Field, i: int) -> str | None:
    """True when a present value is acceptable (``None``: every present value is)."""
    typ, v = f.column.type, f"v{i}"
    if f.kind == "nested" and typ not in ("JSON", "VARCHAR"):
        return "false"
    if f.kind == "json" or typ == "VARCHAR" or (typ == "JSON" and f.kind != "text"):
        return None
    if typ == "BIGINT":
        return f"TRY_CAST(s{i} AS DOUBLE) = {v}"
    if typ in ("DOUBLE", "DATE", "TIMESTAMPTZ"):
        return f"isfinite({v})"
    return f"{v} IS NOT NULL"


NUL_ESCAPED: Final = r"(^|[^\\])(\\\\)*\\u0000"
"""A ``\\u0000`` escape in JSON text (after an even number of backslashes: ``\\\\u0000`` is a
backslash and ``u0000``)."""


def nul_sql(f: Field, i: int) -> str | None:
    """True when a present text or JSON value holds a NUL character (``None``: the column is
    neither). Text holds it as is, JSON text as an escape; the escape is looked for first, the
    pattern matched only where it is."""
    typ = f.column.type
    if typ not in ("VARCHAR", "JSON"):
        return None
    if typ == "VARCHAR" and f.kind in ("text", "typed"):
        return f"contains(v{i}, chr(0))"
    json = f"s{i}" if f.kind == "text" else f"v{i}"
    # (CASE, not AND/OR: DuckDB evaluates both sides of those for every row)
    escaped = (
        f"CASE WHEN contains({json}, '\\u0000') THEN regexp_matches({json}, '{NUL_ESCAPED}') END"
    )
    if f.kind != "text":
        return escaped
    return f"CASE WHEN contains({json}, chr(0)) THEN true ELSE {escaped} END"


def final_sql(f: Field, i: int) -> str:
    """The value loaded: typed, or the column's default."""
    if f.sql is None:
        return f.default or "NULL"
    return f"coalesce(v{i}, {f.default})" if f.default else f"v{i}"


def output_sql(f: Field, i: int) -> str:
    """The output column for field ``i``."""
    if f.sql is None and f.default is None:
        return f"NULL AS {quote(f.name)}"
    value = final_sql(f, i)
    if f.column.type == "TIMESTAMPTZ":
        value = f"CAST({value} AS TIMESTAMPTZ)"
    return f"{value} AS {quote(f.name)}"


def csv_quote(column: str) -> str:
    """A CSV field as written back (quoted when it must be), for payloads."""
    c = quote(column)
    special = (
        f"contains({c}, '\"') OR contains({c}, $delim) OR contains({c}, chr(10)) "
        f"OR contains({c}, chr(13))"
    )
    return f"CASE WHEN {special} THEN '\"' || replace({c}, '\"', '\"\"') || '\"' ELSE {c} END"
