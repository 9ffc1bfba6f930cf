"""Continuous mode picks up what a sync stored, on every backend: orders, their items and tickets
carry ``received_at`` (migration 16 fills it for rows stored before), every loader stamps it, and
the applier's "synced since" pass applies the orders and tickets a sync stored — and only those.
A pass that loses a write-write race is run again: nothing is lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.conformance.audience_data import arrow_rows

from personify import clock
from personify.config import Project, parse_config
from personify.realtime.continuous import Applier, _Item, _scope
from personify.session import Session
from personify.sources.files import import_file
from personify.sources.presets import shopify_orders, zendesk_tickets
from personify.sources.rest.mapping import load_records, targets_for
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import migrate

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "p"
    root.mkdir()
    project = Project(parse_config(f"warehouse: {warehouse_url}\n"), root, root / "personify.yml")
    s = Session(project)
    try:
        yield s
    finally:
        s.close()


def test_migration_16_stamps_rows_stored_before(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=14)
        for name in ("orders", "order_items", "tickets"):  # the layout before migration 16
            wh.execute(f"ALTER TABLE {name} DROP COLUMN received_at")
        wh.execute(
            "INSERT INTO orders (order_id, created_at, updated_at, source) "
            "VALUES ('o1', ?, ?, 's'), ('o2', ?, NULL, 's')",
            [T0, T1, T0],
        )
        wh.execute(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity, price, source) "
            "VALUES ('o1', 1, 'p', 1, 1.0, 's'), ('lost', 1, 'p', 1, 1.0, 's')"
        )
        wh.execute(
            "INSERT INTO tickets (ticket_id, created_at, updated_at, source) "
            "VALUES ('t1', ?, NULL, 's'), ('t2', ?, ?, 's')",
            [T0, T0, T1],
        )
        assert 16 in migrate(wh)
        assert wh.fetch("SELECT order_id, received_at FROM orders ORDER BY 1") == [
            ("o1", T1),
            ("o2", T0),
        ]
        assert wh.fetch("SELECT order_id, received_at FROM order_items ORDER BY 1") == [
            ("lost", None),  # no order: nothing says when it came
            ("o1", T1),
        ]
        assert wh.fetch("SELECT ticket_id, received_at FROM tickets ORDER BY 1") == [
            ("t1", T0),
            ("t2", T1),
        ]
        assert migrate(wh) == []


def shop_order(i: int, email: str, created: datetime, cart: str | None = None) -> dict[str, Any]:
    return {
        "id": 5900 + i,
        "email": email,
        "cart_token": cart or f"cart-{i}",
        "financial_status": "paid",
        "currency": "EUR",
        "subtotal_price": "30.00",
        "total_discounts": "0.00",
        "total_price": "30.00",
        "discount_codes": [],
        "customer": {"id": 70 + i},
        "created_at": created.isoformat(),
        "updated_at": created.isoformat(),
        "line_items": [{"product_id": 5, "quantity": 1, "price": "30.00"}],
    }


def zendesk_ticket(i: int, email: str, created: datetime) -> dict[str, Any]:
    return {
        "id": 10000 + i,
        "subject": f"Question {i}",
        "status": "open",
        "priority": "normal",
        "requester_id": 500 + i,
        "requester": {"email": email},
        "satisfaction_rating": {"score": "unoffered"},
        "created_at": created.isoformat(),
        "updated_at": created.isoformat(),
    }


_zendesk = zendesk_tickets("2000-01-01T00:00:00Z")[0]
TICKETS = msgspec.structs.replace(
    _zendesk, mapping={**_zendesk.mapping, "email": "requester.email"}
)
"""Zendesk's preset, the requester's email side-loaded (it links the ticket to its person)."""


def rest_load(wh: Warehouse, source: str, resource: Any, records: list[Any], at: datetime) -> None:
    """Records stored as a REST sync of ``source`` stores them (one transaction)."""
    targets = targets_for(source, resource.name, resource.table, resource.mapping, resource.nested)
    for target in targets:
        target.open(at)
    try:
        with wh.transaction():
            for target in targets:
                load_records(wh, target, records, received_at=at)
    finally:
        for target in targets:
            target.close()


def test_every_loader_stamps_received_at(session: Session, tmp_path: Path) -> None:
    wh = session.warehouse
    orders = shopify_orders("2000-01-01T00:00:00Z")[0]
    rest_load(wh, "shop", orders, [shop_order(1, "ann@example.com", T0)], NOW)
    assert wh.fetch("SELECT order_id, received_at FROM orders") == [("5901", NOW)]
    assert wh.fetch("SELECT received_at FROM order_items") == [(NOW,)]
    later = NOW + timedelta(minutes=5)  # the same order synced again, unchanged: a duplicate
    rest_load(wh, "shop", orders, [shop_order(1, "ann@example.com", T0)], later)
    assert wh.fetch("SELECT order_id, received_at FROM orders") == [("5901", NOW)]
    refunded = {**shop_order(1, "ann@example.com", T0), "financial_status": "refunded"}
    rest_load(wh, "shop", orders, [refunded], later)  # changed: stored again, re-stamped
    assert wh.fetch("SELECT order_id, received_at FROM orders") == [("5901", later)]
    rest_load(wh, "helpdesk", TICKETS, [zendesk_ticket(1, "ann@example.com", T0)], NOW)
    assert wh.fetch("SELECT ticket_id, received_at FROM tickets") == [("10001", NOW)]

    # a file import stamps the instant it started, even over a received_at column of the file
    csv = tmp_path / "tickets.csv"
    csv.write_text(
        "ticket_id,subject,status,created_at,received_at\n"
        "t-9,Hello,open,2026-01-05T10:00:00Z,1999-01-01T00:00:00Z\n"
    )
    with clock.frozen(later):
        import_file(session, csv, table="tickets", source_name="desk_files")
    assert wh.fetch("SELECT received_at FROM tickets WHERE ticket_id = 't-9'") == [(later,)]


def identify(wh: Warehouse, mid: str, email: str, at: datetime) -> str:
    row = {
        "message_id": mid,
        "type": "identify",
        "user_id": f"u-{email}",
        "timestamp": at,
        "received_at": at,
        "source": "web",
        "traits": json.dumps({"email": email}),
    }
    wh.load(table("events"), arrow_rows("events", [row]))
    return mid


def profile(wh: Warehouse, email: str) -> tuple[Any, ...]:
    (row,) = wh.fetch(
        "SELECT last_purchase_at, order_count, open_tickets FROM customers WHERE email = ?",
        [email],
    )
    return tuple(row)


def test_a_sync_pass_applies_the_orders_and_tickets_it_stored(session: Session) -> None:
    wh = session.warehouse
    orders = shopify_orders("2000-01-01T00:00:00Z")[0]
    with clock.frozen(NOW):
        applier = Applier(session, tick_every=None)
        try:
            applier.submit(
                [
                    identify(wh, "m-ann", "ann@example.com", NOW - timedelta(hours=1)),
                    identify(wh, "m-bob", "bob@example.com", NOW - timedelta(hours=1)),
                ]
            )
            assert applier.wait_idle(60)
            assert profile(wh, "ann@example.com") == (None, 0, 0)

            # before the sync: Bob's order, stored by an earlier sync nobody told the applier of
            early = NOW - timedelta(minutes=30)
            rest_load(wh, "shop", orders, [shop_order(2, "bob@example.com", early)], early)
            started = NOW - timedelta(seconds=2)  # the sync starts, stores, reports
            bought = NOW - timedelta(minutes=3)
            rest_load(wh, "shop", orders, [shop_order(1, "ann@example.com", bought)], NOW)
            scope, _ = _scope([_Item("synced", (("shop", started),), 0.0)])
            picked = wh.fetch(
                f"SELECT order_id FROM orders WHERE {scope.orders[0]}", scope.orders[1]
            )
            assert picked == [("5901",)]  # only what this sync stored

            applier.submit_synced("shop", started)
            assert applier.wait_idle(60)
            assert profile(wh, "ann@example.com") == (bought, 1, 0)

            # the help desk's sync, on its own: Ann's ticket
            ticket = zendesk_ticket(1, "ann@example.com", bought)
            rest_load(wh, "helpdesk", TICKETS, [ticket], NOW)
            applier.submit_synced("helpdesk", started)
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
    # Ann's order and ticket (both name her email)
    assert profile(wh, "ann@example.com") == (bought, 1, 1)
    assert profile(wh, "bob@example.com") == (None, 0, 0)  # left to the batch path


def hold_profile_row(wh: Warehouse, customer_id: str, release: threading.Event) -> threading.Thread:
    """Another writer rebuilding ``customer_id``'s profile row (deleted and written again) in a
    transaction it keeps open until ``release``; returned once it holds the row."""
    held = threading.Event()

    def other_writer() -> None:
        with wh.transaction():
            wh.execute(
                "CREATE TEMP TABLE _kept AS SELECT * FROM customers WHERE customer_id = ?",
                [customer_id],
            )
            wh.execute("DELETE FROM customers WHERE customer_id = ?", [customer_id])
            wh.execute("INSERT INTO customers SELECT * FROM _kept")
            held.set()
            release.wait(60)
        wh.execute("DROP TABLE _kept")

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert held.wait(30)
    return thread


def store_ann_first_name(wh: Warehouse) -> None:
    """Ann's event ``m-2``: an identify that gives her first name."""
    row = {
        "message_id": "m-2",
        "type": "identify",
        "user_id": "u-ann@example.com",
        "timestamp": NOW - timedelta(minutes=1),
        "received_at": NOW,
        "source": "web",
        "traits": json.dumps({"email": "ann@example.com", "first_name": "Ann"}),
    }
    wh.load(table("events"), arrow_rows("events", [row]))


def test_a_conflicting_pass_is_retried_and_nothing_is_lost(session: Session) -> None:
    """A real write-write conflict: another writer is rebuilding Ann's profile row (deleted and
    written again, uncommitted) when the pass of her new event rebuilds it too. DuckDB refuses
    the pass's write ("Conflict on tuple deletion"); the pass is run again after a backoff and
    lands once the other writer committed, with the event's value."""
    wh = session.warehouse
    if wh.scheme != "duckdb":
        pytest.skip("PostgreSQL's row locks make the pass wait for the other writer instead")
    with clock.frozen(NOW):
        applier = Applier(session, tick_every=None)
        try:
            applier.submit([identify(wh, "m-1", "ann@example.com", NOW - timedelta(hours=1))])
            assert applier.wait_idle(60)
            (ann,) = wh.fetch("SELECT customer_id FROM customers")[0]
            release = threading.Event()
            thread = hold_profile_row(wh, ann, release)
            store_ann_first_name(wh)
            applier.submit(["m-2"])
            deadline = time.monotonic() + 20
            while not applier.conflicts and time.monotonic() < deadline:
                time.sleep(0.02)  # the pass met the held row, and is retrying
            assert applier.conflicts >= 1
            release.set()
            thread.join(30)
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            release.set()
            applier.close()
    assert wh.fetch("SELECT first_name FROM customers WHERE customer_id = ?", [ann]) == [("Ann",)]


def test_a_pass_that_keeps_failing_is_tried_again_later_on_its_own(session: Session) -> None:
    """The other writer holds Ann's profile row longer than the pass's patience: her pass
    fails, and fails again on its first retries — a fresh visitor's pass meanwhile lands on its
    own, not taken down with hers — then, once the other writer committed, a retry applies her
    event and her submission's future says so."""
    wh = session.warehouse
    if wh.scheme != "duckdb":
        pytest.skip("PostgreSQL's row locks make the pass wait for the other writer instead")
    with clock.frozen(NOW):
        # retries due at once: they would starve what is queued if they did not take turns
        applier = Applier(session, tick_every=None, patience=0.3, retry_after=(0.0,) * 100)
        release = threading.Event()
        try:
            applier.submit([identify(wh, "m-1", "ann@example.com", NOW - timedelta(hours=1))])
            assert applier.wait_idle(60)
            (ann,) = wh.fetch("SELECT customer_id FROM customers")[0]
            thread = hold_profile_row(wh, ann, release)
            store_ann_first_name(wh)
            ann_applied = applier.submit(["m-2"])
            deadline = time.monotonic() + 30
            while applier.retried < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # her pass failed, and its first retry too
            assert applier.retried >= 2 and applier.given_up == 0
            bob = applier.submit([identify(wh, "m-3", "bob@example.com", NOW)])
            assert bob is not None and bob.result(30) is None  # beside her failing retries,
            assert applier.retried == applier.failures  # never in one of them: each failed
            # pass held one submission (hers)
            assert wh.scalar("SELECT count(*) FROM customers WHERE email = 'bob@example.com'") == 1
            assert ann_applied is not None and not ann_applied.done()
            release.set()
            thread.join(30)
            assert ann_applied.result(60) is None
            assert applier.wait_idle(10)
            assert applier.failures >= 2 and applier.given_up == 0
        finally:
            release.set()
            applier.close()
    assert wh.fetch("SELECT first_name FROM customers WHERE customer_id = ?", [ann]) == [("Ann",)]


def test_a_catch_up_applies_what_every_source_stored_since_an_instant(session: Session) -> None:
    """After a crash (:mod:`personify.realtime.recovery`) one pass takes every event, record,
    order and ticket received since the dead process's mark, whatever their source — and
    nothing received before it."""
    wh = session.warehouse
    orders = shopify_orders("2000-01-01T00:00:00Z")[0]
    with clock.frozen(NOW):
        applier = Applier(session, tick_every=None)
        try:
            applier.submit(
                [
                    identify(wh, "m-ann", "ann@example.com", NOW - timedelta(hours=1)),
                    identify(wh, "m-bob", "bob@example.com", NOW - timedelta(hours=1)),
                ]
            )
            assert applier.wait_idle(60)
            since = NOW - timedelta(minutes=5)  # the mark: stored after it, never applied
            early = NOW - timedelta(minutes=30)
            rest_load(wh, "shop", orders, [shop_order(2, "bob@example.com", early)], early)
            bought = NOW - timedelta(minutes=3)
            rest_load(wh, "shop", orders, [shop_order(1, "ann@example.com", bought)], NOW)
            rest_load(wh, "helpdesk", TICKETS, [zendesk_ticket(1, "ann@example.com", bought)], NOW)
            identify(wh, "m-cy", "cy@example.com", NOW - timedelta(minutes=1))
            assert applier.submit_since(since) is not None
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
    assert profile(wh, "ann@example.com") == (bought, 1, 1)
    assert profile(wh, "cy@example.com") == (None, 0, 0)  # a new customer, from her event
    assert profile(wh, "bob@example.com") == (None, 0, 0)  # before the mark: the batch path's
