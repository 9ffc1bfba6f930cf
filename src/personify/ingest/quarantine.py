"""The quarantine: inputs that failed validation, kept with the reason, never silently dropped.

Every quarantined input gets a deterministic ``id`` — a hash of the source, the input's origin
and its position in it (line or row number; for a file: its path, the line and the row as read)
— so a retried import quarantines the same input once (rows are written with
``on_conflict="ignore"``). A newer version of a file replaces its earlier versions' quarantine
rows (:func:`supersede`): a corrected file imported again leaves its fixed rows' rows out.

``reason`` is a machine-readable code (see :data:`REASONS`); ``detail`` a sentence naming the file
and line, the column (and JSON pointer for nested fields) and what was expected; ``payload`` the
input as received, as text; ``location`` ``path:line``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import duckdb
import pyarrow as pa

from personify.ingest.engine import arrow, registered
from personify.ingest.reasons import (
    BLOCKED_VALUE as BLOCKED_VALUE,
)
from personify.ingest.reasons import (
    CONFLICTING_DUPLICATE as CONFLICTING_DUPLICATE,
)
from personify.ingest.reasons import (
    DUPLICATE_KEY_IN_FILE as DUPLICATE_KEY_IN_FILE,
)
from personify.ingest.reasons import (
    EVENT_TOO_LARGE as EVENT_TOO_LARGE,
)
from personify.ingest.reasons import (
    FUTURE_TIMESTAMP as FUTURE_TIMESTAMP,
)
from personify.ingest.reasons import (
    INVALID_EMAIL as INVALID_EMAIL,
)
from personify.ingest.reasons import (
    INVALID_TIMESTAMP as INVALID_TIMESTAMP,
)
from personify.ingest.reasons import (
    INVALID_TYPE as INVALID_TYPE,
)
from personify.ingest.reasons import (
    INVALID_VALUE as INVALID_VALUE,
)
from personify.ingest.reasons import (
    MALFORMED_JSON as MALFORMED_JSON,
)
from personify.ingest.reasons import (
    MALFORMED_ROW as MALFORMED_ROW,
)
from personify.ingest.reasons import (
    MISSING_IDENTITY as MISSING_IDENTITY,
)
from personify.ingest.reasons import (  # the registry, re-exported
    MISSING_REQUIRED as MISSING_REQUIRED,
)
from personify.ingest.reasons import (
    NUL_MESSAGE as NUL_MESSAGE,
)
from personify.ingest.reasons import (
    OUT_OF_RANGE as OUT_OF_RANGE,
)
from personify.ingest.reasons import (
    PLAN_UNREADABLE as PLAN_UNREADABLE,
)
from personify.ingest.reasons import (
    PLAN_VIOLATION as PLAN_VIOLATION,
)
from personify.ingest.reasons import (
    REASONS as REASONS,
)
from personify.ingest.reasons import (
    TRACKING_REASONS as TRACKING_REASONS,
)
from personify.ingest.reasons import (
    quarantine_id as quarantine_id,
)
from personify.warehouse import Warehouse
from personify.warehouse.schema import QUARANTINE, Column, Table

BAD_ROWS: Final = pa.schema(
    [
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("payload", pa.string()),
        ("location", pa.string()),
    ]
)
"""Rows that failed validation, before they get an id (what :mod:`~personify.ingest.validate`
returns)."""


def empty_bad_rows() -> pa.Table:
    return BAD_ROWS.empty_table()


def malformed_rows(rows: Sequence[tuple[int, str, int, int]], *, label: str) -> pa.Table:
    """Bad rows for CSV rows the parser could not split: ``(line, text, fields, expected)``."""
    return pa.Table.from_pylist(
        [
            {
                "line": line,
                "reason": MALFORMED_ROW,
                "detail": f"{label}:{line}: the row has {fields} fields, the header {expected}",
                "payload": text,
                "location": f"{label}:{line}",
            }
            for line, text, fields, expected in rows
        ],
        schema=BAD_ROWS,
    )


def to_rows(
    con: duckdb.DuckDBPyConnection,
    bad: pa.Table,
    *,
    source: str,
    origin: str,
    received_at: datetime,
    same: bool = False,
) -> pa.Table:
    """``quarantine`` rows for ``bad`` rows (see :data:`BAD_ROWS`) of one input ``origin``.

    The id hashes the source, the origin and the line; with ``same``, the payload too: a file's
    rows (``origin`` its path) then keep their id across versions of the file as long as the row
    and its line are unchanged, so a corrected file imported again quarantines a row still bad
    once (see :func:`supersede`).

    A NUL character in the payload (a CSV row that has one) is written ``\\u0000``: PostgreSQL's
    text holds none."""
    payload = " || ':' || coalesce(payload, '')" if same else ""
    with registered(con, bad) as view:
        return arrow(
            con,
            "SELECT left(sha256($source || ':' || $origin || ':' || CAST(line AS VARCHAR)"
            f"{payload}), 32) AS id, $source AS source, CAST($received_at AS TIMESTAMPTZ) AS "
            "received_at, reason, detail, CASE WHEN contains(payload, chr(0)) "
            "THEN replace(payload, chr(0), '\\u0000') ELSE payload END AS payload, location "
            f"FROM {view}",
            {"source": source, "origin": origin, "received_at": received_at},
        )


def supersede(
    wh: Warehouse, source: str, label: str, kept: Sequence[pa.Array], now: datetime
) -> int:
    """A newer version of the file ``label`` was imported for ``source``: the quarantine rows
    of its earlier versions leave the quarantine — but those this version quarantined again
    (their ids, ``kept``: unchanged rows keep theirs, :func:`to_rows`). A row fixed in the file
    was loaded now; a row deleted from it is gone with the version that held it. Returns how
    many rows left. (In the caller's transaction: they leave only if the new version loads.)"""
    prefix = f"{label}:"
    where = "source = ? AND left(location, ?) = ? AND received_at < ?"
    params: list[object] = [source, len(prefix), prefix, now]
    if wh.scalar(f"SELECT 1 FROM quarantine WHERE {where} LIMIT 1", params) is None:
        return 0
    ids = pa.chunked_array(list(kept), pa.string()) if kept else pa.chunked_array([], pa.string())
    drop = "_q_kept"
    wh.execute(f"DROP TABLE IF EXISTS {drop}")
    wh.execute(f"CREATE TEMP TABLE {drop} (id VARCHAR)")
    if len(ids):
        wh.load(Table(drop, (Column("id", "VARCHAR"),)), pa.table({"id": ids}))
    cleared = wh.execute(
        f"DELETE FROM quarantine WHERE {where} AND id NOT IN (SELECT id FROM {drop})", params
    )
    # (not in a finally: in an aborted PostgreSQL transaction the drop would hide the error; a
    # temporary table goes with the session anyway)
    wh.execute(f"DROP TABLE IF EXISTS {drop}")
    return max(cleared, 0)


def write(wh: Warehouse, rows: pa.Table) -> int:
    """Store quarantine rows; an id already stored is left alone. Returns rows inserted."""
    return wh.load(QUARANTINE, rows, on_conflict="ignore")
