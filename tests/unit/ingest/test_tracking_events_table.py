"""The events' Arrow table, built in one pass as a struct array, is the column-at-a-time one."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.ingest.test_tracking_pool import raws

from personify.ingest.tracking import store
from personify.ingest.tracking.intake import normalize_all
from personify.ingest.tracking.normalize import EVENT_COLUMNS, Inputs


def test_struct_path_equals_the_column_path() -> None:
    inputs = Inputs(
        source="web",
        received_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        context={"library": {"name": "t"}},
    )
    rows = normalize_all(raws(), inputs).rows
    assert len(rows) > 20
    assert any(v is None for r in rows for v in r)  # absent fields are nulls in both
    by_column = store._table(rows, EVENT_COLUMNS, store._EVENT_TYPES)
    one_pass = store.events_table(rows)
    assert one_pass.schema == by_column.schema
    assert one_pass.equals(by_column)
    assert store.events_table([]).schema == by_column.schema
