"""One suite, every backend: the same bodies run on DuckDB and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from personify import clock
from personify.errors import UnsafeQueryError, WarehouseError
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import MIGRATIONS, current_version, migrate
from personify.warehouse.query import run_user_query
from personify.warehouse.schema import TABLES, VIEWS

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def products(*ids: str, name: str = "Shoe", price: float | None = 10.0) -> pa.Table:
    return pa.table(
        {
            "product_id": list(ids),
            "name": [f"{name} {i}" for i in ids],
            "price": pa.array([price] * len(ids), pa.float64()),
            "source": ["test"] * len(ids),
            "created_at": pa.array([T0] * len(ids), pa.timestamp("us", tz="UTC")),
        }
    )


def customers(rows: list[tuple[str, float, datetime | None]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": [r[0] for r in rows],
            "email": [f"{r[0]}@example.org" for r in rows],
            "engagement_score": pa.array([r[1] for r in rows], pa.float64()),
            "last_purchase_at": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            "updated_at": pa.array([T0] * len(rows), pa.timestamp("us", tz="UTC")),
            "preferred_categories": ['["shoes", "hats"]'] * len(rows),
        }
    )


def test_migrations_create_every_table_and_view(warehouse: Warehouse) -> None:
    names = warehouse.relations()
    assert {t.name for t in TABLES} <= names
    assert set(VIEWS) <= names
    assert current_version(warehouse) == MIGRATIONS[-1].version


def test_migrations_are_idempotent_and_reopen_cleanly(warehouse_url: str) -> None:
    with connect(warehouse_url) as wh:
        assert migrate(wh) == []
        wh.load(table("products"), products("p1"))
    with connect(warehouse_url) as wh:
        assert migrate(wh) == []
        assert wh.scalar("SELECT count(*) FROM products") == 1


def test_upgrade_from_an_older_version(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        assert migrate(wh, target=0) == []
        assert current_version(wh) == 0
        applied = migrate(wh)
        assert applied == [m.version for m in MIGRATIONS]
        assert current_version(wh) == MIGRATIONS[-1].version


def test_load_conflict_policies(warehouse: Warehouse) -> None:
    t = table("products")
    assert warehouse.load(t, products("p1", "p2")) == 2
    assert warehouse.load(t, products("p1", "p3"), on_conflict="ignore") == 1
    with pytest.raises(WarehouseError):
        warehouse.load(t, products("p1"))
    warehouse.load(t, products("p1", "p2", name="Boot", price=99.5), on_conflict="update")
    rows = warehouse.fetch("SELECT product_id, name, price FROM products ORDER BY product_id")
    assert rows == [("p1", "Boot p1", 99.5), ("p2", "Boot p2", 99.5), ("p3", "Shoe p3", 10.0)]


def test_load_through_arrow_handles_nulls_json_and_quotes(warehouse: Warehouse) -> None:
    data = pa.table(
        {
            "message_id": ["m1", "m2"],
            "type": ["track", "track"],
            "event": ['Quote "this", please', None],
            "timestamp": pa.array([T0, T0 + timedelta(seconds=1)], pa.timestamp("us", tz="UTC")),
            "received_at": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            "source": ["web", "web"],
            "properties": ['{"price": 9.5, "name": "Café, crème"}', None],
        }
    )
    assert warehouse.load(table("events"), data) == 2
    rows = warehouse.fetch(
        "SELECT message_id, event, properties->>'name', timestamp FROM events ORDER BY message_id"
    )
    assert rows[0][:3] == ("m1", 'Quote "this", please', "Café, crème")
    assert rows[1][1] is None and rows[1][2] is None
    assert rows[0][3] == T0


@pytest.mark.parametrize("vouched", [False, True], ids=["checked", "vouched"])
def test_json_text_is_stored_as_given_whether_checked_or_vouched_for(
    warehouse: Warehouse, vouched: bool
) -> None:
    text = '{ "price" : 9.5, "tags": ["a", "b"], "name": "Café" }'
    events = pa.table(
        {
            "message_id": ["m1", "m2"],
            "type": ["track", "track"],
            "timestamp": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            "received_at": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            "source": ["web", "web"],
            "properties": [text, None],
            "context": ['{"ip": "10.0.0.1", "page": {"url": "https://shop.example/"}}', "{}"],
        }
    )
    assert warehouse.load(table("events"), events, valid_json=vouched) == 2  # keyless on DuckDB
    assert warehouse.load(table("customers"), customers([("c1", 1.0, None)]), valid_json=vouched)
    rows = warehouse.fetch(
        "SELECT properties->>'name', properties->'tags'->>1, context->'page'->>'url' "
        "FROM events ORDER BY message_id"
    )
    assert rows == [("Café", "b", "https://shop.example/"), (None, None, None)]
    assert warehouse.scalar("SELECT preferred_categories->>1 FROM customers") == "hats"
    if warehouse.scheme == "duckdb":  # (PostgreSQL's jsonb keeps no text to compare)
        stored = warehouse.scalar("SELECT CAST(properties AS VARCHAR) FROM events LIMIT 1")
        assert stored == text


def test_json_text_not_vouched_for_is_checked(warehouse: Warehouse) -> None:
    bad = customers([("c1", 1.0, None)]).set_column(5, "preferred_categories", pa.array(["[oops"]))
    with pytest.raises(WarehouseError):
        warehouse.load(table("customers"), bad)
    assert warehouse.scalar("SELECT count(*) FROM customers") == 0


def test_large_load_is_bulk(warehouse: Warehouse) -> None:
    n = 120_000
    ids = [f"p{i:06d}" for i in range(n)]
    assert warehouse.load(table("products"), products(*ids)) == n
    got = warehouse.fetch_arrow("SELECT count(*) AS n, sum(price) AS s FROM products")
    assert got.to_pylist() == [{"n": n, "s": 10.0 * n}]


def test_transactions_roll_back_on_error(warehouse: Warehouse) -> None:
    with pytest.raises(RuntimeError), warehouse.transaction():
        warehouse.load(table("products"), products("p1"))
        with warehouse.transaction():  # nested joins the outer one
            warehouse.load(table("products"), products("p2"))
        raise RuntimeError("boom")
    assert warehouse.scalar("SELECT count(*) FROM products") == 0
    with warehouse.transaction():
        warehouse.load(table("products"), products("p1"))
    assert warehouse.scalar("SELECT count(*) FROM products") == 1


def test_placeholders_and_percent_signs(warehouse: Warehouse) -> None:
    warehouse.load(table("products"), products("p1", "p2", name="50% off"))
    rows = warehouse.fetch(
        "SELECT product_id FROM products WHERE name LIKE '50%' AND product_id = ?", ["p2"]
    )
    assert rows == [("p2",)]
    assert warehouse.execute("UPDATE products SET stock = ? WHERE product_id = ?", [3, "p1"]) == 1


def test_seed_segment_runs_as_written_in_mysql(warehouse: Warehouse) -> None:
    now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    warehouse.load(
        table("customers"),
        customers(
            [
                ("recent-engaged", 91.0, now - timedelta(days=3)),
                ("recent-cold", 40.0, now - timedelta(days=3)),
                ("old-engaged", 95.0, now - timedelta(days=45)),
                ("never", 99.0, None),
            ]
        ),
    )
    seed = (
        "SELECT customer_id, email, purchase_date, engagement_score FROM customer_data "
        "WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;"
    )
    with clock.frozen(now):
        result = run_user_query(warehouse, seed, dialect="mysql")
    assert result.columns == ["customer_id", "email", "purchase_date", "engagement_score"]
    assert [r[0] for r in result.rows] == ["recent-engaged"]
    assert str(result.rows[0][2]) == "2026-02-26"


def test_current_date_in_a_named_time_zone(warehouse: Warehouse) -> None:
    # 03:00 UTC on 1 March is still 28 February in New York, already 1 March in Tokyo
    with clock.frozen(datetime(2026, 3, 1, 3, 0, tzinfo=UTC)):
        result = run_user_query(
            warehouse,
            "SELECT CURRENT_DATE('America/New_York') AS ny, CURRENT_DATE('Asia/Tokyo') AS tokyo, "
            "CURRENT_DATE() AS utc",
            dialect="bigquery",
        )
        assert [str(v) for v in result.rows[0]] == ["2026-02-28", "2026-03-01", "2026-03-01"]
        with pytest.raises(UnsafeQueryError, match="unknown time zone 'Nowhere/X'"):
            run_user_query(warehouse, "SELECT CURRENT_DATE('Nowhere/X')", dialect="bigquery")


def test_user_query_row_cap(warehouse: Warehouse) -> None:
    warehouse.load(table("products"), products(*[f"p{i}" for i in range(30)]))
    result = run_user_query(warehouse, "SELECT product_id FROM products", max_rows=10)
    assert len(result.rows) == 10 and result.truncated


def test_user_query_timeout(warehouse: Warehouse) -> None:
    slow = (
        "SELECT count(*) FROM customers a CROSS JOIN customers b CROSS JOIN customers c "
        "CROSS JOIN customers d"
    )
    warehouse.load(table("customers"), customers([(f"c{i}", 1.0, None) for i in range(300)]))
    with pytest.raises(UnsafeQueryError, match="longer than"):
        run_user_query(warehouse, slow, timeout_s=0.5)
    # the warehouse is still usable afterwards
    assert warehouse.scalar("SELECT count(*) FROM customers") == 300


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE customers",
        "DELETE FROM customers",
        "SELECT 1; DROP TABLE customers",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM pg_catalog.pg_authid",
        "WITH x AS (DELETE FROM customers RETURNING *) SELECT * FROM x",
    ],
)
def test_user_query_refuses_anything_but_one_select(warehouse: Warehouse, sql: str) -> None:
    with pytest.raises(UnsafeQueryError):
        run_user_query(warehouse, sql)
    assert "customers" in warehouse.relations()


def test_json_columns_are_queryable(warehouse: Warehouse) -> None:
    warehouse.load(table("customers"), customers([("c1", 50.0, None)]))
    value = warehouse.scalar("SELECT preferred_categories->>0 FROM customers")
    assert value == "shoes"


def test_a_failed_load_inside_a_transaction_reports_its_own_error(warehouse: Warehouse) -> None:
    warehouse.load(table("products"), products("p1"))
    with pytest.raises(WarehouseError) as info, warehouse.transaction():
        warehouse.load(table("products"), products("p1"))  # duplicate key
    assert "p1" in str(info.value) or "duplicate" in str(info.value).lower()
    assert warehouse.scalar("SELECT count(*) FROM products") == 1


# -- tables keyed by construction (no engine key on DuckDB, a primary key on PostgreSQL)
def events(*ids: str, event: str = "Viewed") -> pa.Table:
    ts = pa.array([T0] * len(ids), pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "message_id": list(ids),
            "type": ["track"] * len(ids),
            "event": [f"{event} {i}" for i in range(len(ids))],
            "timestamp": ts,
            "received_at": ts,
            "source": ["web"] * len(ids),
        }
    )


def stored_events(wh: Warehouse) -> list[tuple[str, str]]:
    return [(m, e) for m, e in wh.fetch("SELECT message_id, event FROM events ORDER BY 1, 2")]


def test_keyed_by_construction_ignore_keeps_the_stored_and_the_first_row(
    warehouse: Warehouse,
) -> None:
    t = table("events")
    assert warehouse.load(t, events("m1", "m2"), on_conflict="ignore") == 2
    assert warehouse.load(t, events("m2", "m3", "m3", "m4", event="Re"), on_conflict="ignore") == 2
    assert stored_events(warehouse) == [
        ("m1", "Viewed 0"),
        ("m2", "Viewed 1"),
        ("m3", "Re 1"),  # the first of the batch's two m3 rows
        ("m4", "Re 3"),
    ]


def test_keyed_by_construction_update_then_insert(warehouse: Warehouse) -> None:
    t = table("events")
    warehouse.load(t, events("m1", "m2"))
    n = warehouse.load(t, events("m2", "m3", event="New"), on_conflict="update")
    assert n == 2
    assert stored_events(warehouse) == [("m1", "Viewed 0"), ("m2", "New 0"), ("m3", "New 1")]
    n = warehouse.load(
        t, events("m1", "m4", event="Only"), on_conflict="update", update_columns=["message_id"]
    )
    assert n == 1  # nothing to update but the key: stored rows kept, new ones inserted
    assert ("m1", "Viewed 0") in stored_events(warehouse)


@pytest.mark.parametrize("name", ["events", "products"])
def test_an_update_counts_and_writes_only_rows_that_changed(
    warehouse: Warehouse, name: str
) -> None:
    """A source sending the same rows again (a REST sync's next page, a webhook retried) stores
    nothing: the rows that did not change but for the instant they were received are neither
    written nor counted as loaded (a newer ``updated_at`` is a change: consent given again).
    On a table keyed by construction (DuckDB's events) and on one with the engine's key
    (products)."""
    t = table(name)
    later = pa.array([T0 + timedelta(hours=1)] * 2, pa.timestamp("us", tz="UTC"))
    if name == "events":
        first, again = events("m1", "m2"), events("m1", "m2", event="Viewed")
        again = again.set_column(again.schema.get_field_index("received_at"), "received_at", later)
        key, column = "message_id", "event"
    else:
        first = pa.table(
            {
                "product_id": ["p1", "p2"],
                "name": ["Shoe", "Hat"],
                "updated_at": pa.array([T0] * 2, pa.timestamp("us", tz="UTC")),
                "source": ["shop", "shop"],
            }
        )
        again = first
        key, column = "product_id", "name"
    assert warehouse.load(t, first) == 2
    assert warehouse.load(t, again, on_conflict="update") == 0
    if name == "events":
        assert {r[0] for r in warehouse.fetch("SELECT received_at FROM events")} == {T0}
    else:  # a source's own updated_at is data: a newer one is a change
        newer = first.set_column(first.schema.get_field_index("updated_at"), "updated_at", later)
        assert warehouse.load(t, newer, on_conflict="update") == 2
        again = newer
    changed = again.set_column(
        again.schema.get_field_index(column), column, pa.array(["New", again[column][1].as_py()])
    )
    assert warehouse.load(t, changed, on_conflict="update") == 1
    got = dict(warehouse.fetch(f"SELECT {key}, {column} FROM {name} ORDER BY 1"))
    assert got[first[key][0].as_py()] == "New"


def test_an_update_only_newer_keeps_a_stored_row_updated_later(warehouse: Warehouse) -> None:
    """``only_newer``: the upsert itself keeps a stored row whose ``updated_at`` is later than
    the incoming one's (a webhook delivered late, or a sync page read before another process
    stored a newer version): decided in the statement, not by a read before it."""
    ts = pa.timestamp("us", tz="UTC")

    def orders(total: float, at: datetime | None) -> pa.Table:
        return pa.table(
            {
                "order_id": ["o1"],
                "total": [total],
                "status": ["paid"],
                "created_at": pa.array([T0], ts),
                "updated_at": pa.array([at], ts),
                "source": ["shop"],
            }
        )

    t = table("orders")
    assert warehouse.load(t, orders(10.0, T0 + timedelta(hours=2))) == 1
    older = orders(99.0, T0 + timedelta(hours=1))
    assert warehouse.load(t, older, on_conflict="update", only_newer=True) == 0
    assert warehouse.scalar("SELECT total FROM orders") == 10.0
    newer = orders(20.0, T0 + timedelta(hours=3))
    assert warehouse.load(t, newer, on_conflict="update", only_newer=True) == 1
    undated = orders(30.0, None)  # (no version to compare: taken as before)
    assert warehouse.load(t, undated, on_conflict="update", only_newer=True) == 1
    assert warehouse.load(t, older, on_conflict="update") == 1  # without it: the older wins
    assert warehouse.scalar("SELECT total FROM orders") == 99.0


def test_keyed_by_construction_error_names_the_key(warehouse: Warehouse) -> None:
    t = table("events")
    warehouse.load(t, events("m1"))
    with pytest.raises(WarehouseError) as stored:
        warehouse.load(t, events("m2", "m1"))
    assert "m1" in str(stored.value) or "duplicate" in str(stored.value).lower()
    with pytest.raises(WarehouseError) as repeated:
        warehouse.load(t, events("m5", "m5"))
    assert "m5" in str(repeated.value) or "duplicate" in str(repeated.value).lower()
    assert stored_events(warehouse) == [("m1", "Viewed 0")]  # neither load wrote anything


def test_keyed_by_construction_composite_key_and_rollback(warehouse: Warehouse) -> None:
    t = table("order_items")
    items = pa.table(
        {
            "order_id": ["o1", "o1", "o2"],
            "line_no": [1, 2, 1],
            "product_id": ["p1", "p2", "p1"],
            "quantity": [1, 1, 3],
            "price": [1.0, 2.0, 3.0],
            "source": ["shop"] * 3,
        }
    )
    assert warehouse.load(t, items, on_conflict="ignore") == 3
    assert warehouse.load(t, items, on_conflict="ignore") == 0
    with pytest.raises(RuntimeError), warehouse.transaction():
        assert warehouse.load(t, items.slice(2).set_column(0, "order_id", pa.array(["o3"]))) == 1
        raise RuntimeError("boom")
    assert warehouse.scalar("SELECT count(*) FROM order_items") == 3


def test_keyed_by_construction_concurrent_loads_store_each_key_once(
    warehouse: Warehouse,
) -> None:
    t = table("events")
    ids = [f"m{i:04d}" for i in range(400)]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        mine = ids[k * 50 : k * 50 + 250]  # overlapping ranges: many keys loaded by several
        try:
            for start in range(0, len(mine), 25):
                for attempt in range(20):
                    try:
                        with warehouse.transaction():
                            warehouse.load(
                                t, events(*mine[start : start + 25]), on_conflict="ignore"
                            )
                        break
                    except WarehouseError:  # a write conflict the engine reports: retry
                        if attempt == 19:
                            raise
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    got = warehouse.fetch("SELECT count(*), count(DISTINCT message_id) FROM events")
    assert got == [(400, 400)]


def test_bulk_loads_refresh_the_planner_statistics(warehouse: Warehouse) -> None:
    """PostgreSQL: a table that received a bulk load is ANALYZEd once the load committed (the
    planner would otherwise plan for the empty table it saw last); small loads are not."""
    if warehouse.scheme != "postgresql":
        pytest.skip("DuckDB keeps its table statistics up to date itself")
    from personify.warehouse.postgres.backend import ANALYZE_MIN_ROWS, PostgresWarehouse

    assert isinstance(warehouse, PostgresWarehouse)

    def estimate() -> float:
        found = warehouse.scalar(
            "SELECT reltuples FROM pg_class WHERE oid = to_regclass(?)",
            [f"{warehouse.schema}.products"],
        )
        return float(found)

    warehouse.load(table("products"), products("small-1", "small-2"))
    assert warehouse.analyzes == 0
    n = ANALYZE_MIN_ROWS + 500
    with pytest.raises(RuntimeError), warehouse.transaction():
        warehouse.load(table("products"), products(*(f"gone{i}" for i in range(n))))
        raise RuntimeError("rolled back: nothing to analyze")
    assert warehouse.analyzes == 0
    with warehouse.transaction():
        warehouse.load(table("products"), products(*(f"a{i}" for i in range(n // 2))))
        with warehouse.transaction():
            warehouse.load(table("products"), products(*(f"b{i}" for i in range(n - n // 2))))
        assert warehouse.analyzes == 0  # not before the commit
    assert warehouse.analyzes == 1
    assert estimate() == n + 2
    warehouse.load(table("products"), products(*(f"c{i}" for i in range(100))))
    assert warehouse.analyzes == 1  # 100 rows into ~10,000: the statistics still hold


def test_a_worker_thread_releases_its_connection(warehouse: Warehouse) -> None:
    """``release_thread`` closes the calling thread's connection (a worker about to end): on
    PostgreSQL its server session ends; the next statement on that thread opens a new one."""
    seen: list[object] = []

    def work() -> None:
        seen.append(warehouse.scalar("SELECT pg_backend_pid()" if _pg(warehouse) else "SELECT 1"))
        warehouse.release_thread()
        seen.append(warehouse.scalar("SELECT 2"))  # a new connection
        warehouse.release_thread()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(30)
    assert seen[1] == 2
    if _pg(warehouse):
        deadline = time.monotonic() + 10
        while warehouse.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ?", [seen[0]]):
            assert time.monotonic() < deadline, "the released session is still open"
            time.sleep(0.05)
    assert warehouse.scalar("SELECT 3") == 3  # the caller's own connection is untouched


def _pg(warehouse: Warehouse) -> bool:
    return warehouse.dialect == "postgres"


def _events(*ids: str, event: str = "Viewed", stored: datetime | None = None) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    n = len(ids)
    data = {
        "message_id": list(ids),
        "type": ["track"] * n,
        "event": [event] * n,
        "user_id": ["u1"] * n,
        "timestamp": pa.array([T0] * n, ts),
        "received_at": pa.array([T0] * n, ts),
        "source": ["web"] * n,
    }
    if stored is not None:
        data["stored_at"] = pa.array([stored] * n, ts)
    return pa.table(data)


def test_every_load_into_events_stamps_when_it_stored_them(warehouse: Warehouse) -> None:
    """``events.stored_at``: the real clock at the insert (a --now, a received_at days old do
    not change it), one instant a load, set by the warehouse whoever the writer; an update that
    changes the row stores it again (a new stamp: event forwarding sends it again), one that
    changes nothing keeps it; a writer that carries it is taken at its word."""
    t = table("events")
    before = clock.wall()
    with clock.frozen(T0):  # (a pinned clock: the data's time, not when a row was stored)
        assert warehouse.load(t, _events("m1", "m2"), on_conflict="ignore") == 2
    after = clock.wall()
    (first, last), *_ = warehouse.fetch("SELECT min(stored_at), max(stored_at) FROM events")
    assert first == last and before <= first <= after
    assert warehouse.load(t, _events("m1", "m2"), on_conflict="update") == 0  # (no change)
    assert warehouse.scalar("SELECT count(*) FROM events WHERE stored_at = ?", [first]) == 2
    assert warehouse.load(t, _events("m1", event="Bought"), on_conflict="update") == 1
    after = clock.wall()
    (event, again), *_ = warehouse.fetch(
        "SELECT event, stored_at FROM events WHERE message_id = 'm1'"
    )
    assert event == "Bought" and first < again <= after
    assert warehouse.scalar("SELECT stored_at FROM events WHERE message_id = 'm2'") == first
    warehouse.load(t, _events("m3", stored=T0))
    assert warehouse.scalar("SELECT stored_at FROM events WHERE message_id = 'm3'") == T0


def test_migration_37_adds_stored_at_null_for_the_events_stored_before(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=36)
        wh.execute("ALTER TABLE events DROP COLUMN stored_at")  # the layout before 37
        wh.execute(
            "INSERT INTO events (message_id, type, timestamp, received_at, source) "
            "VALUES ('old', 'track', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'web')"
        )
        assert migrate(wh)[0] == 37  # (and any later migration)
        wh.load(table("events"), _events("new"))
        rows = wh.fetch("SELECT message_id, stored_at IS NULL FROM events ORDER BY 1")
        assert rows == [("new", False), ("old", True)]
        assert 37 not in migrate(wh)  # once


def test_migration_40_links_pending_removals_and_aliases_to_their_erasure(
    warehouse_url: str,
) -> None:
    """``destination_state.erasure_id`` and ``erasure_progress.erasure_of``: added to a
    warehouse migrated to 39, the rows stored before keep NULL (every erasure's, none's own),
    new rows carry the link; run again, nothing."""
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=39)
        wh.execute("ALTER TABLE destination_state DROP COLUMN erasure_id")  # the layout before 40
        wh.execute("ALTER TABLE erasure_progress DROP COLUMN erasure_of")
        wh.execute(
            "INSERT INTO destination_state (destination, key_hash, row_hash, status, pushed_at, "
            "record_key) VALUES ('crm', 'old', '', 'erased', ?, 'token')",
            [T0],
        )
        wh.execute(
            "INSERT INTO erasure_progress (erasure_id, step, status, rows, finished_at) "
            "VALUES ('alias-hash', 'alias', 'done', 0, ?)",
            [T0],
        )
        assert migrate(wh)[0] == 40  # (and any later migration)
        wh.execute(
            "INSERT INTO destination_state (destination, key_hash, row_hash, status, pushed_at, "
            "record_key, erasure_id) VALUES ('crm', 'new', '', 'erased', ?, 'token', 'e1')",
            [T0],
        )
        rows = wh.fetch("SELECT key_hash, erasure_id FROM destination_state ORDER BY key_hash")
        assert [tuple(r) for r in rows] == [("new", "e1"), ("old", None)]
        assert wh.fetch("SELECT erasure_of FROM erasure_progress") == [(None,)]
        assert migrate(wh) == []  # once
