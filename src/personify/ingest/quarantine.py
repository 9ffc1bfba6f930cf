"""The quarantine: inputs that failed validation, kept with the reason, never silently dropped.

Every quarantined input gets a deterministic ``id`` — a hash of the source, the input's identity
(for a file: its SHA-256) and its position in it (line or row number) — so a retried import
quarantines the same input once (rows are written with ``on_conflict="ignore"``).

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
    CONFLICTING_DUPLICATE as CONFLICTING_DUPLICATE,
)
from personify.ingest.reasons import (
    DUPLICATE_KEY_IN_FILE as DUPLICATE_KEY_IN_FILE,
)
from personify.ingest.reasons import (
    EVENT_TOO_LARGE as EVENT_TOO_LARGE,
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
    OUT_OF_RANGE as OUT_OF_RANGE,
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
from personify.warehouse.schema import QUARANTINE

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
) -> pa.Table:
    """``quarantine`` rows for ``bad`` rows (see :data:`BAD_ROWS`) of one input ``origin``."""
    with registered(con, bad) as view:
        return arrow(
            con,
            "SELECT left(sha256($source || ':' || $origin || ':' || CAST(line AS VARCHAR)), 32)"
            " AS id, $source AS source, CAST($received_at AS TIMESTAMPTZ) AS received_at,"
            f" reason, detail, payload, location FROM {view}",
            {"source": source, "origin": origin, "received_at": received_at},
        )


def write(wh: Warehouse, rows: pa.Table) -> int:
    """Store quarantine rows; an id already stored is left alone. Returns rows inserted."""
    return wh.load(QUARANTINE, rows, on_conflict="ignore")
