"""Quarantine rows: deterministic ids, reasons and locations."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from personify.ingest import quarantine
from personify.ingest.engine import open_engine

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_ids_are_deterministic_per_source_input_and_position() -> None:
    bad = quarantine.malformed_rows([(7, "a,b,c", 3, 2), (9, "x", 1, 2)], label="f.csv")
    con = open_engine()
    try:
        rows = quarantine.to_rows(con, bad, source="crm", origin="abc123", received_at=NOW)
        again = quarantine.to_rows(con, bad, source="crm", origin="abc123", received_at=NOW)
        other = quarantine.to_rows(con, bad, source="shop", origin="abc123", received_at=NOW)
    finally:
        con.close()
    ids = rows.column("id").to_pylist()
    assert ids == again.column("id").to_pylist()
    assert ids == [
        quarantine.quarantine_id("crm", "abc123", 7),
        quarantine.quarantine_id("crm", "abc123", 9),
    ]
    assert set(ids).isdisjoint(other.column("id").to_pylist())
    assert rows.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    first = rows.to_pylist()[0]
    assert first | {"id": None} == {
        "id": None,
        "source": "crm",
        "received_at": NOW,
        "reason": "malformed_row",
        "detail": "f.csv:7: the row has 3 fields, the header 2",
        "payload": "a,b,c",
        "location": "f.csv:7",
    }


def test_every_reason_code_is_documented() -> None:
    codes = {
        quarantine.MISSING_REQUIRED,
        quarantine.INVALID_TYPE,
        quarantine.INVALID_EMAIL,
        quarantine.MALFORMED_JSON,
        quarantine.MALFORMED_ROW,
        quarantine.DUPLICATE_KEY_IN_FILE,
        quarantine.MISSING_IDENTITY,
        quarantine.OUT_OF_RANGE,
        quarantine.EVENT_TOO_LARGE,
        quarantine.INVALID_VALUE,
        quarantine.INVALID_TIMESTAMP,
        quarantine.FUTURE_TIMESTAMP,
        quarantine.PLAN_VIOLATION,
        quarantine.PLAN_UNREADABLE,
        quarantine.CONFLICTING_DUPLICATE,
        quarantine.BLOCKED_VALUE,
    }
    assert codes == set(quarantine.REASONS)


def test_one_registry_of_reason_codes() -> None:
    """The tracking API's codes are the quarantine's own, described once."""
    from personify.ingest.tracking import normalize

    assert set(normalize.REASONS) == quarantine.TRACKING_REASONS <= set(quarantine.REASONS)
    for code, text in normalize.REASONS.items():
        assert text == quarantine.REASONS[code]
    module_codes = {
        value
        for name, value in vars(normalize).items()
        if name.isupper() and isinstance(value, str) and value in quarantine.REASONS
    }
    assert module_codes <= quarantine.TRACKING_REASONS
