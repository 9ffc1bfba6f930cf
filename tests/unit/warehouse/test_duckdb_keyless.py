"""DuckDB keeps the key of tables keyed by construction itself (no ART index): the plan, the lock
against stale snapshots, and the migration that drops an older warehouse's primary key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from personify.errors import WarehouseError
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import MIGRATIONS, migrate

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
KEYLESS = ("events", "order_items", "customer_records")


def events(*ids: str) -> pa.Table:
    ts = pa.array([T0] * len(ids), pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "message_id": list(ids),
            "type": ["track"] * len(ids),
            "timestamp": ts,
            "received_at": ts,
            "source": ["web"] * len(ids),
        }
    )


def primary_keys(wh: Warehouse) -> set[str]:
    rows = wh.fetch(
        "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    )
    return {r[0] for r in rows}


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    with connect(f"duckdb:///{tmp_path / 'w.duckdb'}") as warehouse:
        yield warehouse


def test_tables_keyed_by_construction_have_no_engine_key(wh: Warehouse) -> None:
    keys = primary_keys(wh)
    assert not keys & set(KEYLESS)
    assert "products" in keys  # entity tables keep theirs


def test_the_anti_join_builds_its_hash_table_on_the_batch(wh: Warehouse) -> None:
    wh.load(table("events"), events(*(f"s{i}" for i in range(5000))))
    batch = events("a", "b")
    con = wh._cursor()  # type: ignore[attr-defined]
    con.register("__batch", batch)
    plan = "\n".join(
        r[1]
        for r in con.execute(
            "EXPLAIN SELECT * FROM __batch b WHERE NOT EXISTS "
            "(SELECT 1 FROM events t WHERE t.message_id = b.message_id)"
        ).fetchall()
    )
    assert "RIGHT_ANTI" in plan  # probe side: the stored table; build side: the batch


def test_a_transaction_whose_snapshot_predates_another_writer_fails_instead_of_doubling(
    wh: Warehouse,
) -> None:
    t = table("events")
    started, written = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def late() -> None:
        try:
            with wh.transaction():
                wh.scalar("SELECT count(*) FROM events")  # snapshot taken here
                started.set()
                written.wait()
                wh.load(t, events("m1"), on_conflict="ignore")
            outcome.append(None)
        except WarehouseError as e:
            outcome.append(e)

    thread = threading.Thread(target=late)
    thread.start()
    started.wait()
    wh.load(t, events("m1"), on_conflict="ignore")  # commits while the other is open
    written.set()
    thread.join()
    assert isinstance(outcome[0], WarehouseError)
    assert "retry" in str(outcome[0])
    assert wh.scalar("SELECT count(*) FROM events") == 1
    with wh.transaction():  # a fresh transaction sees it and ignores it
        assert wh.load(t, events("m1", "m2"), on_conflict="ignore") == 1


def test_a_writer_waits_for_the_open_transaction_of_another(wh: Warehouse) -> None:
    t = table("events")
    inside = threading.Event()
    results: list[int] = []

    def second() -> None:
        inside.wait()
        results.append(wh.load(t, events("m1", "m2"), on_conflict="ignore"))

    thread = threading.Thread(target=second)
    thread.start()
    with wh.transaction():
        wh.load(t, events("m1"), on_conflict="ignore")
        inside.set()
        thread.join(0.3)
        assert thread.is_alive()  # blocked on the table's lock until this commits
    thread.join()
    assert results == [1]
    assert wh.scalar("SELECT count(*) FROM events") == 2


def test_migration_drops_the_primary_key_of_an_older_warehouse(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'old.duckdb'}"
    with connect(url, migrate_schema=False) as wh:
        migrate(wh, target=4)
        for name in KEYLESS:  # as versions before 5 created them
            cols = wh.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                [name],
            )
            defs = ", ".join(f'"{c}" {t}{"" if n == "YES" else " NOT NULL"}' for c, t, n in cols)
            key = ", ".join(f'"{k}"' for k in table(name).primary_key)
            wh.execute(f"DROP TABLE {name}")
            wh.execute(f"CREATE TABLE {name} ({defs}, PRIMARY KEY ({key}))")
        wh.load(table("events"), events("m1", "m2"))
        assert set(KEYLESS) <= primary_keys(wh)
        assert migrate(wh) == [v.version for v in MIGRATIONS if v.version > 4]
        assert not primary_keys(wh) & set(KEYLESS)
        assert wh.fetch("SELECT message_id FROM events ORDER BY 1") == [("m1",), ("m2",)]
        nullable = wh.scalar(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'events' AND column_name = 'message_id'"
        )
        assert nullable == "NO"
        assert wh.load(table("events"), events("m2", "m3"), on_conflict="ignore") == 1
    with connect(url) as wh:
        assert migrate(wh) == []
        assert wh.scalar("SELECT count(*) FROM events") == 3
