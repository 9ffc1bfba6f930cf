"""Schema drift on every backend: a stream's first observation is its baseline; later ones
record fields added, removed and changed in type (nulls change nothing; a field that comes back
is added again), which ``recent_changes`` lists for a day; the properties of tracked events are
compared per event, from the events received since the last look."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from personify.config import Project, ProjectConfig, Secret, TrackingSource
from personify.quality.drift import (
    observe,
    observe_events,
    observe_files,
    recent_changes,
    record_fields,
)
from personify.session import Session
from personify.warehouse import Warehouse
from personify.warehouse.schema import EVENTS, FILE_IMPORTS

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def changes(found: list) -> set[tuple[str, ...]]:  # type: ignore[type-arg]
    return {(c.field, c.change, str(c.old_type), str(c.new_type)) for c in found}


def test_added_removed_and_retyped_fields_are_recorded(warehouse: Warehouse) -> None:
    first = {"id": "string", "email": "string", "total": "number"}
    assert observe(warehouse, "crm", "resource:contacts", first, T0) == []  # the baseline
    assert observe(warehouse, "crm", "resource:contacts", first, T0 + timedelta(hours=1)) == []

    later = T0 + timedelta(hours=2)
    found = observe(
        warehouse,
        "crm",
        "resource:contacts",
        {"id": "string", "total": "string", "phone": "string"},
        later,
    )
    assert changes(found) == {
        ("phone", "added", "None", "string"),
        ("email", "removed", "string", "None"),
        ("total", "type_changed", "number", "string"),
    }
    # only nulls seen: no type change; the removed field coming back is added again
    again = observe(
        warehouse,
        "crm",
        "resource:contacts",
        {"id": "null", "total": "string", "phone": "string", "email": "string"},
        later + timedelta(hours=1),
    )
    assert changes(again) == {("email", "added", "None", "string")}
    # another stream of the same source has its own baseline
    assert observe(warehouse, "crm", "resource:deals", {"x": "number"}, later) == []

    shown = recent_changes(warehouse, later + timedelta(hours=2))
    assert [(c.source, c.stream, c.field, c.change) for c in shown] == [
        ("crm", "resource:contacts", "email", "removed"),
        ("crm", "resource:contacts", "phone", "added"),
        ("crm", "resource:contacts", "total", "type_changed"),
        ("crm", "resource:contacts", "email", "added"),
    ]
    assert recent_changes(warehouse, later + timedelta(days=2)) == []  # a day later: gone
    stored = dict(
        warehouse.fetch("SELECT field, type FROM source_fields WHERE stream = 'resource:contacts'")
    )
    assert stored == {"id": "string", "total": "string", "phone": "string", "email": "string"}


def test_record_fields_types_every_json_value() -> None:
    got = record_fields(
        [
            {"s": "x", "n": 1, "f": 1.5, "b": True, "o": {}, "a": [], "z": None, "m": 1},
            {"m": "one"},
            "not a record",
        ]
    )
    assert got == {
        "s": "string",
        "n": "number",
        "f": "number",
        "b": "boolean",
        "o": "object",
        "a": "array",
        "z": "null",
        "m": "number|string",
    }


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "project"
    root.mkdir()
    web = TrackingSource(name="web", write_key=Secret("k"), tracking_plan=None)
    config = ProjectConfig(warehouse=warehouse_url, sources=(web,))
    with Session(Project(config, root, root / "p.yml")) as s:
        yield s


def _events(rows: list[tuple[str, str, dict[str, object], datetime]]) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "message_id": [f"m{i}-{r[3].timestamp()}" for i, r in enumerate(rows)],
            "type": ["track"] * len(rows),
            "event": [r[1] for r in rows],
            "timestamp": pa.array([r[3] for r in rows], ts),
            "received_at": pa.array([r[3] for r in rows], ts),
            "source": [r[0] for r in rows],
            "properties": [msgspec.json.encode(r[2]).decode() for r in rows],
        }
    )


def test_event_properties_drift_per_event(session: Session) -> None:
    wh = session.warehouse
    wh.load(
        EVENTS,
        _events(
            [
                ("web", "Order Completed", {"order_id": "o1", "revenue": 10.5}, T0),
                ("web", "Order Completed", {"order_id": "o2", "revenue": 3}, T0),
                ("web", "Product Viewed", {"sku": "a", "price": 1}, T0),
                ("other", "Order Completed", {"surprise": True}, T0),  # not a tracking source
            ]
        ),
    )
    assert observe_events(session, T0 + timedelta(minutes=1)) == []  # baselines
    later = T0 + timedelta(hours=1)
    wh.load(
        EVENTS,
        _events(
            [
                ("web", "Order Completed", {"order_id": 3, "revenue": 1, "coupon": "X"}, later),
                ("web", "Product Viewed", {"sku": "b"}, later),  # too few to say removed
            ]
        ),
    )
    found = observe_events(session, later + timedelta(minutes=1))
    assert {(c.stream, c.field, c.change, c.old_type, c.new_type) for c in found} == {
        ("event:Order Completed", "coupon", "added", None, "string"),
        ("event:Order Completed", "order_id", "type_changed", "string", "number"),
    }
    # nothing new since: nothing observed, nothing changes
    assert observe_events(session, later + timedelta(minutes=2)) == []


def test_files_are_observed_once_each_and_history_is_not_replayed(
    session: Session, tmp_path: Path
) -> None:
    wh = session.warehouse

    def imported(name: str, header: str, at: datetime) -> None:
        path = tmp_path / name
        path.write_text(header + "\n")
        row = {
            "source": ["drops"],
            "path": [str(path)],
            "sha256": [name],
            "table_name": ["orders"],
            "rows_read": [0],
            "rows_loaded": [0],
            "rows_quarantined": [0],
            "imported_at": pa.array([at], pa.timestamp("us", tz="UTC")),
        }
        wh.load(FILE_IMPORTS, pa.table(row))

    imported("1.csv", "order_id,old", T0)
    imported("2.csv", "order_id,total", T0 + timedelta(hours=1))
    assert observe_files(session, T0 + timedelta(hours=2)) == []  # the newest is the baseline
    assert observe_files(session, T0 + timedelta(hours=2)) == []  # nothing new
    imported("3.csv", "order_id,total,coupon", T0 + timedelta(hours=3))
    found = observe_files(session, T0 + timedelta(hours=4))
    assert [(c.stream, c.field, c.change, c.detected_at) for c in found] == [
        ("file:orders", "coupon", "added", T0 + timedelta(hours=3))
    ]
