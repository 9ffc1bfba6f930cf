"""How DuckDB stores what is written in volume: an event's context with zstd, its customer id
(written again by identity resolution) uncompressed, JSON text vouched for by its writer stored
without being parsed again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from personify.warehouse import Warehouse, connect, table
from personify.warehouse.duckdb.backend import _json_marked
from personify.warehouse.migrations import create_table_sql, migrate

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = connect(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    migrate(warehouse)
    yield warehouse
    warehouse.close()


def events(n: int) -> pa.Table:
    ts = pa.array([T0] * n, pa.timestamp("us", tz="UTC"))
    context = [
        json.dumps({"ip": f"10.0.{i % 250}.{i % 7}", "page": {"url": f"https://s.example/p/{i}"}})
        for i in range(n)
    ]
    return pa.table(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "type": ["page"] * n,
            "timestamp": ts,
            "received_at": ts,
            "source": ["web"] * n,
            "properties": ['{"path": "/"}'] * n,
            "context": context,
        }
    )


def compressions(wh: Warehouse, *columns: str) -> dict[str, list[str]]:
    """The compressions DuckDB used for the data segments of these columns of ``events``."""
    marks = ", ".join("?" for _ in columns)
    rows = wh.fetch(
        "SELECT column_name, list(DISTINCT compression ORDER BY compression) "
        f"FROM pragma_storage_info('events') WHERE column_name IN ({marks}) "
        "AND segment_type <> 'VALIDITY' GROUP BY ALL",
        list(columns),
    )
    return {str(name): list(used) for name, used in rows}


def test_the_event_context_is_declared_and_stored_with_zstd(wh: Warehouse) -> None:
    ddl = create_table_sql(wh, table("events"))[0]
    assert '"context" JSON USING COMPRESSION zstd' in ddl
    assert '"customer_id" VARCHAR USING COMPRESSION uncompressed' in ddl
    assert ddl.count("USING COMPRESSION") == 2  # the rest keeps DuckDB's own choice
    wh.load(table("events"), events(130_000), valid_json=True)
    wh.execute("CHECKPOINT")
    used = compressions(wh, "context", "properties")
    assert used["context"] == ["ZSTD"]
    assert "ZSTD" not in used["properties"]
    assert wh.scalar("SELECT context->'page'->>'url' FROM events WHERE message_id = 'm7'") == (
        "https://s.example/p/7"
    )


def test_the_event_customer_id_is_stored_uncompressed(wh: Warehouse) -> None:
    """Identity resolution sets every event's customer id, then merges change them: stored as
    they are, a checkpoint does not analyse and compress the whole column again."""
    wh.load(table("events"), events(130_000), valid_json=True)
    wh.execute("CHECKPOINT")
    with wh.transaction():
        wh.execute(
            "UPDATE events SET customer_id = 'cus_' || substr(md5(message_id), 1, 20) "
            "WHERE message_id <> 'm3'"
        )
    wh.execute("CHECKPOINT")
    used = compressions(wh, "customer_id", "message_id")
    assert used["customer_id"] == ["Uncompressed"]
    assert used["message_id"] != ["Uncompressed"]  # (the other text keeps DuckDB's own choice)
    assert wh.scalar("SELECT count(*) FROM events WHERE customer_id IS NULL") == 1
    expected = wh.scalar("SELECT 'cus_' || substr(md5('m7'), 1, 20)")
    assert wh.scalar("SELECT customer_id FROM events WHERE message_id = 'm7'") == expected


def test_only_text_bound_for_json_columns_is_marked() -> None:
    data = events(3).append_column("traits", pa.array([None, "{}", None], pa.string()))
    marked = _json_marked(table("events"), data)
    json_columns = {"properties", "context", "traits"}
    for name in data.column_names:
        typ = marked.schema.field(name).type
        if name in json_columns:
            assert isinstance(typ, pa.BaseExtensionType) and typ.extension_name == "arrow.json"
            assert marked.column(name).chunk(0).storage.equals(data.column(name).chunk(0))
        else:
            assert typ == data.schema.field(name).type
    # by the target's column types: customers keep JSON only in traits
    other = _json_marked(table("customers"), data)
    assert [f.name for f in other.schema if f.type != data.schema.field(f.name).type] == ["traits"]
