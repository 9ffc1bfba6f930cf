"""The in-memory DuckDB that validation runs on.

Ingest checks whole batches at once in SQL over Arrow (``TRY_CAST``, JSON functions, window
functions) instead of looping over rows in Python. The engine is a private, in-memory DuckDB with
external access disabled — it reads nothing but the Arrow tables handed to it — and its session
time zone pinned to UTC, so a timestamp without a zone is read as UTC.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pyarrow as pa

_names = itertools.count()


def open_engine() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB for validation (no file or network access, UTC)."""
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    con.execute("SET TimeZone = 'UTC'")
    return con


@contextlib.contextmanager
def registered(
    con: duckdb.DuckDBPyConnection, data: pa.Table, name: str | None = None
) -> Iterator[str]:
    """Register ``data`` as a view (``name``, else a fresh one) for the duration of the block."""
    name = name or f"__personify_batch_{next(_names)}"
    con.register(name, data)
    try:
        yield name
    finally:
        con.unregister(name)


def arrow(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None
) -> pa.Table:
    """Run ``sql`` (named ``$parameters``) and return the result as an Arrow table."""
    rel = con.sql(sql, params=dict(params) if params else None)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb 2 / 1.x
    result: pa.Table = fetch()
    return result
