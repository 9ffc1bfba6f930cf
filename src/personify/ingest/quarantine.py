"""The quarantine: inputs that failed validation, kept with the reason, never silently dropped.

Every quarantined input gets a deterministic ``id`` — a hash of the source, the input's identity
(for a file: its SHA-256) and its position in it (line or row number) — so a retried import
quarantines the same input once (rows are written with ``on_conflict="ignore"``).

``reason`` is a machine-readable code (see :data:`REASONS`); ``detail`` a sentence naming the file
and line, the column (and JSON pointer for nested fields) and what was expected; ``payload`` the
input as received, as text; ``location`` ``path:line``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import duckdb
import pyarrow as pa

from personify.ingest.engine import arrow, registered
from personify.warehouse import Warehouse
from personify.warehouse.schema import QUARANTINE

MISSING_REQUIRED: Final = "missing_required"
INVALID_TYPE: Final = "invalid_type"
INVALID_EMAIL: Final = "invalid_email"
MALFORMED_JSON: Final = "malformed_json"
MALFORMED_ROW: Final = "malformed_row"
DUPLICATE_KEY_IN_FILE: Final = "duplicate_key_in_file"
MISSING_IDENTITY: Final = "missing_identity"
OUT_OF_RANGE: Final = "out_of_range"
EVENT_TOO_LARGE: Final = "event_too_large"
INVALID_VALUE: Final = "invalid_value"
INVALID_TIMESTAMP: Final = "invalid_timestamp"
PLAN_VIOLATION: Final = "tracking_plan_violation"
CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"

REASONS: Final[dict[str, str]] = {
    MISSING_REQUIRED: "a required column or field is missing or empty (a tracking event: "
    "messageId; event for track, groupId for group, userId and previousId for alias)",
    INVALID_TYPE: "a value cannot be read as its column's type (a tracking event: not an object, "
    "a field of the wrong type, or an unknown message type)",
    INVALID_EMAIL: "an email column holds something that is not an email address",
    MALFORMED_JSON: "not decodable JSON: a JSON Lines line that is not a JSON object (or not "
    "UTF-8), a webhook body or tracking event that does not parse",
    MALFORMED_ROW: "a CSV row with a different number of fields than the header",
    DUPLICATE_KEY_IN_FILE: "the row's key appeared earlier in the same file (the first is kept)",
    MISSING_IDENTITY: "an event with neither a userId nor an anonymousId",
    OUT_OF_RANGE: "a value outside its column's range (a quantity of 0 or less, a negative price)",
    EVENT_TOO_LARGE: "a tracking event's JSON is over 32 KB (rejected, not kept)",
    INVALID_VALUE: "a tracking event's string holds a NUL character",
    INVALID_TIMESTAMP: "a tracking event's timestamp is not ISO 8601 or is out of range",
    PLAN_VIOLATION: "the tracking plan's JSON Schema for the event refuses it",
    CONFLICTING_DUPLICATE: "a messageId already stored with another payload (the first is kept)",
}
"""Every quarantine reason code and what it means — the one registry: the file importer, the
REST and webhook sources and the tracking API (:mod:`personify.ingest.tracking.normalize`) all
take their codes from here."""

TRACKING_REASONS: Final = frozenset(
    {
        EVENT_TOO_LARGE,
        INVALID_VALUE,
        MALFORMED_JSON,
        INVALID_TYPE,
        MISSING_REQUIRED,
        MISSING_IDENTITY,
        INVALID_TIMESTAMP,
        PLAN_VIOLATION,
        CONFLICTING_DUPLICATE,
    }
)
"""The codes the tracking API gives (a subset of :data:`REASONS`)."""

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


def quarantine_id(source: str, origin: str, position: str | int) -> str:
    """The deterministic id of one quarantined input (same formula as :func:`to_rows`)."""
    return hashlib.sha256(f"{source}:{origin}:{position}".encode()).hexdigest()[:32]


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
