"""Reconciliation on every backend, against the real local mock APIs: after a sync the source and
the warehouse agree; drift planted in the warehouse (rows deleted, fields altered) and at the
source (records added or changed after the sync) is found exactly — the source's changes as
pending — and ``repair`` makes the next run clean; runs and discrepancies are stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from personify.config import (
    ApiKeyAuth,
    BearerAuth,
    FileSource,
    Project,
    ProjectConfig,
    QualityConfig,
    ReconcileSettings,
    RestClient,
    RestSource,
    Secret,
)
from personify.demo.mock_apis import TOKEN, MockApis, sample_apis, serve_mock_apis
from personify.quality import latest_run, reconcile
from personify.session import Session
from personify.sources import sync_sources
from personify.sources.presets import resolve_preset

N = 120


@pytest.fixture
def apis() -> MockApis:
    return sample_apis(N)


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path, apis: MockApis) -> Iterator[Session]:
    root = tmp_path / "project"
    root.mkdir()
    with serve_mock_apis(apis) as url:
        client = {"requests_per_second": 1000.0, "backoff_base": 0.01}
        sources = (
            RestSource(
                name="crm",
                preset="hubspot_contacts",
                client=RestClient(base_url=url, auth=BearerAuth(token=Secret(TOKEN)), **client),
            ),
            RestSource(
                name="shop",
                preset="shopify_orders",
                client=RestClient(
                    base_url=url,
                    auth=ApiKeyAuth(api_key=Secret(TOKEN), name="X-Shopify-Access-Token"),
                    **client,
                ),
            ),
        )
        quality = QualityConfig(reconcile=ReconcileSettings(threshold=2, sample_size=3))
        config = ProjectConfig(warehouse=warehouse_url, sources=sources, quality=quality)
        with Session(Project(config, root, root / "p.yml")) as s:
            yield s


def by_table(report: object) -> dict[str, object]:
    return {f"{t.source}/{t.table}": t for t in report.tables}  # type: ignore[attr-defined]


def test_a_fresh_sync_reconciles_clean(session: Session, apis: MockApis) -> None:
    sync_sources(session)
    report = reconcile(session)
    assert report.status == "clean" and not report.flagged
    tables = by_table(report)
    assert set(tables) == {"crm/customer_records", "shop/orders", "shop/order_items"}
    orders = tables["shop/orders"]
    assert orders.source_rows == orders.warehouse_rows == orders.matched == N  # type: ignore[attr-defined]
    items = sum(len(o["line_items"]) for o in apis.orders)
    assert tables["shop/order_items"].matched == items  # type: ignore[attr-defined]
    stored = session.warehouse.fetch("SELECT status, matched, flagged FROM reconciliation_runs")
    assert stored == [("clean", N * 2 + items, False)]


def test_hubspot_beyond_its_search_window_reconciles_clean(
    session: Session, apis: MockApis
) -> None:
    """HubSpot's search pages through 10,000 results at most (then 400): reconciliation reads
    on with a new search from the newest contact read, as the syncs do, each contact once. Here
    the window is 100 and a page holds 1 contact (the preset's page count is the window's)."""
    apis.search_window = 100
    crm = session.project.config.sources[0]
    assert isinstance(crm, RestSource)
    resource = resolve_preset(crm).resources[0]
    json = {**resource.endpoint.json, "limit": 1}
    resource = msgspec.structs.replace(
        resource, endpoint=msgspec.structs.replace(resource.endpoint, json=json)
    )
    crm = msgspec.structs.replace(crm, preset=None, resources=(resource,))
    config = msgspec.structs.replace(session.project.config, sources=(crm,))
    session.project = Project(config, session.project.root, session.project.file)
    sync_sources(session)  # the first 100 contacts
    sync_sources(session)  # the rest, searched for anew
    report = reconcile(session)
    contacts = by_table(report)["crm/customer_records"]
    assert report.status == "clean"
    assert contacts.source_rows == contacts.matched == N  # type: ignore[attr-defined]


def test_planted_drift_is_found_exactly_and_repair_cleans_it(
    session: Session, apis: MockApis
) -> None:
    sync_sources(session)
    wh = session.warehouse
    deleted, altered = str(apis.orders[3]["id"]), str(apis.orders[7]["id"])
    wh.execute("DELETE FROM orders WHERE order_id = ?", [deleted])
    wh.execute(
        "UPDATE orders SET total = total + 1, status = 'refunded' WHERE order_id = ?", [altered]
    )
    wh.execute("UPDATE customer_records SET last_name = 'Changed' WHERE record_id = ?", ["100005"])
    wh.execute("DELETE FROM order_items WHERE order_id = ? AND line_no = 1", [altered])
    later = datetime.now(UTC) + timedelta(minutes=5)
    apis.upsert("contacts", {**apis.contacts[0], "id": "999999"}, at=later)  # added at the source
    changed = {**apis.orders[20], "total_price": "1234.00"}
    apis.upsert("orders", changed, at=later)  # changed at the source after the sync
    wh.execute(
        "INSERT INTO orders (order_id, created_at, source) VALUES ('ghost', ?, 'shop')", [later]
    )

    report = reconcile(session)
    tables = by_table(report)
    orders = tables["shop/orders"]
    assert (orders.missing_in_warehouse, orders.mismatched, orders.missing_at_source) == (1, 1, 1)  # type: ignore[attr-defined]
    assert orders.pending == 1 and orders.fields == {"status": 1, "total": 1}  # type: ignore[attr-defined]
    crm = tables["crm/customer_records"]
    assert (crm.mismatched, crm.pending, crm.fields) == (1, 1, {"last_name": 1})  # type: ignore[attr-defined]
    items = tables["shop/order_items"]
    assert (items.missing_in_warehouse, items.discrepancies) == (1, 1)  # type: ignore[attr-defined]
    assert report.discrepancies == 3 + 1 + 1 and report.pending == 2
    assert report.flagged  # 5 > threshold 2
    assert latest_run(wh)["flagged"] is True  # type: ignore[index]
    kinds = dict(
        wh.fetch(
            "SELECT record_key || ':' || kind, pending FROM reconciliation_discrepancies "
            "WHERE table_name = 'orders'"
        )
    )
    assert kinds == {
        f"{deleted}:missing_in_warehouse": False,
        f"{altered}:mismatch": False,
        f"{changed['id']}:mismatch": True,
        "ghost:missing_at_source": False,
    }
    assert len(orders.sample) == 3  # type: ignore[attr-defined]  # sample_size

    repaired = reconcile(session, ["shop", "crm"], repair=True)
    assert repaired.repaired == 3 + 2 + 1  # not the ghost
    assert repaired.status == "repaired" and not repaired.flagged  # only the ghost is left
    assert wh.scalar("SELECT total FROM orders WHERE order_id = ?", [str(changed["id"])]) == 1234.0

    again = reconcile(session)
    assert again.discrepancies == 1 and again.pending == 0  # the ghost: reported, never deleted
    assert by_table(again)["shop/orders"].missing_at_source == 1  # type: ignore[attr-defined]


def test_an_unknown_source_is_refused(session: Session) -> None:
    from personify.errors import PersonifyError

    with pytest.raises(PersonifyError, match="no source|unknown"):
        reconcile(session, ["nope"])


def test_file_sources_are_read_again_and_new_files_are_pending(
    warehouse_url: str, tmp_path: Path
) -> None:
    from personify.config import FileSource

    root = tmp_path / "files"
    (root / "data").mkdir(parents=True)
    (root / "data" / "orders-1.csv").write_text(
        "order_id,email,total,created_at\n"
        "a1,a@example.org,10,2026-03-01T10:00:00Z\n"
        "a2,b@example.org,12,2026-03-01T11:00:00Z\n"
        "a3,c@example.org,14,2026-03-01T12:00:00Z\n"
    )
    (root / "data" / "people.csv").write_text(
        "customer_id,email,first_name\nc1,a@example.org,Ann\nc2,b@example.org,Bob\n"
    )
    sources = (
        FileSource(name="shop", path="data/orders-*.csv", table="orders"),
        FileSource(name="crm", path="data/people.csv", table="customers"),
    )
    config = ProjectConfig(warehouse=warehouse_url, sources=sources)
    with Session(Project(config, root, root / "p.yml")) as session:
        sync_sources(session)
        report = reconcile(session)
        assert report.status == "clean", report.to_dict()
        wh = session.warehouse
        wh.execute("DELETE FROM orders WHERE order_id = 'a1'")
        wh.execute("UPDATE customer_records SET first_name = 'Anne' WHERE record_id = 'c1'")
        (root / "data" / "orders-2.csv").write_text(
            "order_id,email,total,created_at\na4,d@example.org,9,2026-03-02T10:00:00Z\n"
        )
        found = by_table(reconcile(session))
        orders, people = found["shop/orders"], found["crm/customer_records"]
        assert (orders.missing_in_warehouse, orders.pending) == (1, 1)  # type: ignore[attr-defined]
        assert people.fields == {"first_name": 1}  # type: ignore[attr-defined]
        assert reconcile(session, repair=True).repaired == 3
        assert reconcile(session).status == "clean"


def test_reconcile_records_the_schema_drift_of_rest_records(
    session: Session, apis: MockApis
) -> None:
    reconcile(session, ["shop"])  # the baseline of the orders' keys
    wh = session.warehouse
    assert wh.scalar("SELECT count(*) FROM schema_changes") == 0
    assert (
        wh.scalar(
            "SELECT type FROM source_fields "
            "WHERE stream = 'resource:orders' AND field = 'total_price'"
        )
        == "string"
    )
    later = datetime.now(UTC) + timedelta(minutes=5)
    apis.upsert("orders", {**apis.orders[0], "gift_note": "for you", "total_price": 12.5}, at=later)
    reconcile(session, ["shop"])
    found = wh.fetch(
        "SELECT source, stream, field, change, old_type, new_type FROM schema_changes "
        "ORDER BY field"
    )
    assert found == [
        ("shop", "resource:orders", "gift_note", "added", None, "string"),
        ("shop", "resource:orders", "total_price", "type_changed", "string", "number|string"),
    ]


def test_a_file_source_reconciles_with_its_own_future_tolerance(
    warehouse_url: str, tmp_path: Path
) -> None:
    """Reconcile reads a file as the importer did, with the source's ``future_tolerance``: an
    event years ahead that the source tolerates is expected in the warehouse, not quarantined."""
    root = tmp_path / "tolerant"
    (root / "data").mkdir(parents=True)
    lines = [
        {"messageId": "e1", "event": "Viewed", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z"},
        {"messageId": "e2", "event": "Viewed", "userId": "u1", "timestamp": "2099-03-01T10:00:00Z"},
    ]
    (root / "data" / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    source = FileSource(
        name="app", path="data/events.jsonl", table="events", future_tolerance="36500d"
    )
    config = ProjectConfig(warehouse=warehouse_url, sources=(source,))
    with Session(Project(config, root, root / "p.yml")) as session:
        sync_sources(session)
        assert session.warehouse.scalar("SELECT count(*) FROM events") == 2
        report = reconcile(session)
        assert report.status == "clean", report.to_dict()
