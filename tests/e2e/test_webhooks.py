"""``POST /webhooks/{source}`` on a real server: Shopify, Stripe (signed by the official ``stripe``
library) and Standard Webhooks (signed by the ``standardwebhooks`` library) deliveries are
verified over the raw body, stored once before the answer, and forged, tampered, stale or
replayed deliveries change nothing."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import stripe
from standardwebhooks import Webhook

from personify.config import Project, ProjectConfig, Secret, WebhookSource
from personify.profiles.build import build_customers
from personify.server.background import background_server
from personify.session import Session
from personify.sources.presets import shopify_orders
from personify.sources.rest.mapping import load_records, targets_for
from personify.sources.webhooks import (
    WebhookReceiver,
    sign_shopify,
    sign_standard,
    sign_stripe,
    verify,
)

SHOPIFY_SECRET = "shpss_test_secret"
STRIPE_SECRET = "whsec_stripe_test_secret"
STANDARD_NEW = "whsec_" + "bmV3LXNlY3JldC1rZXktZm9yLXRlc3RzIQ=="
STANDARD_OLD = "whsec_" + "b2xkLXNlY3JldC1rZXktZm9yLXRlc3RzIQ=="

_orders = shopify_orders("2000-01-01T00:00:00Z")[0]
SOURCES = (
    WebhookSource(
        name="shop_hooks",
        scheme="shopify",
        secrets=(Secret(SHOPIFY_SECRET),),
        table="orders",
        mapping=_orders.mapping,
        nested=_orders.nested,
    ),
    WebhookSource(
        name="stripe_hooks",
        scheme="stripe",
        secrets=(Secret(STRIPE_SECRET),),
        table="orders",
        data_selector="data.object",
        mapping={
            "order_id": "id",
            "status": "status",
            "currency": "currency",
            "total": "amount|cents",
            "created_at": "created|unix",
            "source_customer_id": "customer",
        },
    ),
    WebhookSource(
        name="tickets_hooks",
        scheme="standard",
        secrets=(Secret(STANDARD_NEW), Secret(STANDARD_OLD)),
        table="tickets",
        data_selector="data",
        mapping={"ticket_id": "id|string", "subject": "subject", "status": "status"},
        max_body_bytes=10_000,
    ),
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Session]]:
    root = tmp_path / "project"
    root.mkdir()
    config = ProjectConfig(warehouse=f"duckdb:///{tmp_path / 'w.duckdb'}", sources=SOURCES)
    project = Project(config, root, root / "personify.yml")
    with Session(project) as session, background_server(session) as url:
        yield url, session


def count(session: Session, table: str) -> int:
    return int(session.warehouse.scalar(f"SELECT count(*) FROM {table}"))


def order(
    order_id: int, total: str = "30.00", *, status: str = "paid", at: datetime | None = None
) -> bytes:
    now = (at or datetime.now(UTC)).isoformat()
    body = {
        "id": order_id,
        "email": "ann@example.org",
        "currency": "EUR",
        "total_price": total,
        "financial_status": status,
        "customer": {"id": 77},
        "created_at": now,
        "updated_at": now,
        "line_items": [
            {"product_id": 5, "quantity": 1, "price": "10.00"},
            {"product_id": 6, "quantity": 2, "price": "10.00"},
        ],
    }
    return json.dumps(body).encode()


def shopify_headers(body: bytes, delivery: str, *, secret: str = SHOPIFY_SECRET, age: float = 0):
    triggered = (datetime.now(UTC) - timedelta(seconds=age)).isoformat()
    return {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": sign_shopify(secret, body),
        "X-Shopify-Webhook-Id": delivery,
        "X-Shopify-Topic": "orders/updated",
        "X-Shopify-Triggered-At": triggered,
    }


def post(url: str, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/webhooks/{source}", content=body, headers=headers, timeout=30)


# ------------------------------------------------------------------------------------ Shopify
def test_a_shopify_delivery_is_stored_at_once(served: tuple[str, Session]) -> None:
    url, session = served
    body = order(1001)
    r = post(url, "shop_hooks", body, shopify_headers(body, "d-1"))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "accepted", "id": "d-1", "rows": 3, "quarantined": 0}
    assert session.warehouse.fetch("SELECT order_id, total, source FROM orders") == [
        ("1001", 30.0, "shop_hooks")
    ]
    assert count(session, "order_items") == 2
    # right after the answer, the real-time path makes the buyer a customer, order counted
    deadline = time.monotonic() + 30
    while not session.warehouse.fetch("SELECT 1 FROM customers"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert session.warehouse.fetch("SELECT email, order_count FROM customers") == [
        ("ann@example.org", 1)
    ]


def test_a_replayed_delivery_has_one_effect(served: tuple[str, Session]) -> None:
    url, session = served
    body = order(1002)
    headers = shopify_headers(body, "d-2")
    assert post(url, "shop_hooks", body, headers).json()["status"] == "accepted"
    session.warehouse.execute("UPDATE orders SET total = 1 WHERE order_id = '1002'")
    again = post(url, "shop_hooks", body, headers)
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "id": "d-2"}
    assert session.warehouse.scalar("SELECT total FROM orders") == 1.0  # not applied twice
    assert count(session, "webhook_receipts") == 1


def test_a_shopify_event_resent_with_a_new_webhook_id_has_one_effect(
    served: tuple[str, Session],
) -> None:
    """Shopify resends an event with a new ``X-Shopify-Webhook-Id`` on some retries: its
    ``X-Shopify-Event-Id`` (for its topic) is the delivery's identity. Another topic's delivery
    of the same event is another delivery; a receipt written under the webhook id alone (before
    the event id was preferred) still makes the resend a duplicate."""
    url, session = served
    body = order(1010)
    first = {**shopify_headers(body, "d-10"), "X-Shopify-Event-Id": "e-10"}
    answer = post(url, "shop_hooks", body, first).json()
    assert answer["status"] == "accepted" and answer["id"] == "orders/updated:e-10"
    session.warehouse.execute("UPDATE orders SET total = 1 WHERE order_id = '1010'")
    resent = {**shopify_headers(body, "d-11"), "X-Shopify-Event-Id": "e-10"}
    again = post(url, "shop_hooks", body, resent)
    assert again.json() == {"status": "duplicate", "id": "orders/updated:e-10"}
    assert session.warehouse.scalar("SELECT total FROM orders") == 1.0  # not applied twice
    paid = {**resent, "X-Shopify-Topic": "orders/paid"}
    assert post(url, "shop_hooks", body, paid).json()["status"] == "accepted"
    older = order(1011)
    assert post(url, "shop_hooks", older, shopify_headers(older, "d-12")).status_code == 200
    upgraded = {**shopify_headers(older, "d-12"), "X-Shopify-Event-Id": "e-12"}
    assert post(url, "shop_hooks", older, upgraded).json()["status"] == "duplicate"
    assert count(session, "webhook_receipts") == 3


def test_the_same_delivery_at_once_many_times_has_one_effect(
    served: tuple[str, Session],
) -> None:
    url, session = served
    body = order(1003)
    headers = shopify_headers(body, "d-3")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(url, "shop_hooks", body, headers), range(16)))
    statuses = sorted(a.json()["status"] for a in answers)
    assert all(a.status_code == 200 for a in answers)
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 15
    assert count(session, "orders") == 1 and count(session, "order_items") == 2


def test_a_delivery_older_than_the_stored_order_does_not_overwrite_it(
    served: tuple[str, Session],
) -> None:
    """Senders retry a failed delivery after later ones succeeded (Shopify: "webhooks can be
    delivered out of order"): the late, older version of the order must not undo the newer."""
    url, session = served
    paid_at = datetime.now(UTC) - timedelta(minutes=5)
    paid = order(1004, "30.00", status="paid", at=paid_at)
    refunded = order(1004, "0.00", status="refunded", at=paid_at + timedelta(minutes=1))
    assert post(url, "shop_hooks", refunded, shopify_headers(refunded, "d-5")).status_code == 200
    late = post(url, "shop_hooks", paid, shopify_headers(paid, "d-4"))  # the retry, arriving last
    assert late.status_code == 200 and late.json()["status"] == "accepted"
    assert session.warehouse.fetch("SELECT status, total FROM orders") == [("refunded", 0.0)]
    assert count(session, "webhook_receipts") == 2


# ------------------------------------------------------------- real time beside other writers
def wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}"
        time.sleep(0.05)


def customer_orders(session: Session) -> list[tuple[object, ...]]:
    return session.warehouse.fetch("SELECT email, order_count, total_spent FROM customers")


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def conflicts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("write-write conflict" in r.getMessage() for r in caplog.records)


@contextlib.contextmanager
def holding(session: Session, write: Callable[[], object]) -> Iterator[threading.Event]:
    """Another writer: ``write()`` in a transaction held open until the yielded event is set."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with session.warehouse.transaction():
                write()
                held.set()
                release.wait(60)
        except BaseException as e:  # shown by the test, not lost in the thread
            errors.append(e)
            held.set()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(60)
    try:
        yield release
    finally:
        release.set()
        thread.join(60)
    assert not errors, errors


def store_synced(session: Session, records: list[dict[str, object]]) -> None:
    """Store ``records`` as the Shopify REST source's sync stores a page (one transaction)."""
    targets = targets_for("shop_api", "orders", "orders", _orders.mapping, _orders.nested)
    now = datetime.now(UTC)
    with session.warehouse.transaction():
        for target in targets:
            target.open(now)
            load_records(session.warehouse, target, records, received_at=now)
            target.close()


def test_deliveries_one_after_another_are_all_applied_in_real_time(
    served: tuple[str, Session], caplog: pytest.LogCaptureFixture
) -> None:
    """What ``personify demo`` does: the shop's latest orders, ten buyers, delivered one after
    another — each answered before its real-time apply, so the applies overlap each other and the
    next delivery's store; none may fail on a write-write conflict."""
    caplog.set_level(logging.DEBUG, logger="personify.sources.webhooks")
    url, session = served
    synced = []  # as in the demo: a sync stored the shop's orders, no identity pass ran yet
    for i in range(500):
        record = json.loads(order(1_000_000 + i, "5.00"))
        synced.append(record | {"email": f"other{i}@example.org", "customer": {"id": 9000 + i}})
    store_synced(session, synced)
    for i in range(10):
        record = json.loads(order(2000 + i, "10.00"))
        record |= {"email": f"buyer{i}@example.org", "customer": {"id": 500 + i}}
        body = json.dumps(record).encode()
        assert post(url, "shop_hooks", body, shopify_headers(body, f"d-m{i}")).json()["status"] == (
            "accepted"
        )
    expected = [(f"buyer{i}@example.org", 1, 10.0) for i in range(10)]
    wait_for(lambda: sorted(customer_orders(session)) == expected, "ten buyers")
    assert failures(caplog) == []


def test_a_delivery_while_a_sync_writes_is_stored_and_applied_in_real_time(
    served: tuple[str, Session], caplog: pytest.LogCaptureFixture
) -> None:
    """A sync (the Shopify REST source's store: the page's rows, in one transaction) writes an
    order of the same buyer while her webhook delivery arrives: the delivery waits for it, its
    stale snapshot is a conflict, retried — accepted, not 503 — and the real-time apply then
    counts both orders at once, nothing logged as failed."""
    caplog.set_level(logging.DEBUG, logger="personify.sources.webhooks")
    url, session = served
    synced = json.loads(order(3001, "20.00"))
    targets = targets_for("shop_api", "orders", "orders", _orders.mapping, _orders.nested)
    for target in targets:
        target.open(datetime.now(UTC))

    def sync_page() -> None:
        for target in targets:
            load_records(session.warehouse, target, [synced], received_at=datetime.now(UTC))

    body = order(3002, "30.00")
    with ThreadPoolExecutor(1) as pool, holding(session, sync_page) as release:
        answer = pool.submit(post, url, "shop_hooks", body, shopify_headers(body, "d-sync"))
        time.sleep(0.5)  # the delivery is waiting for the sync's transaction
        assert not answer.done()
        release.set()
        r = answer.result(60)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    assert conflicts(caplog) >= 1  # the conflict happened, and was retried
    wait_for(lambda: customer_orders(session) == [("ann@example.org", 2, 50.0)], "both orders")
    assert failures(caplog) == []


def test_a_real_time_apply_that_meets_a_write_write_conflict_is_retried_until_applied(
    served: tuple[str, Session], caplog: pytest.LogCaptureFixture
) -> None:
    """The error behind the demo's "real-time update failed (TransactionException)", made to
    happen on purpose: a delivery is stored and answered; before its real-time apply runs, another
    writer that takes no table lock (here: a plain ``DELETE`` of the buyer's customer row) holds
    its transaction open. The apply's rewrite of that row is a DuckDB write-write conflict
    ("Conflict on tuple deletion"): it backs off with jitter and runs again, whole, until the
    writer has committed — applied, the customer rebuilt with both orders, nothing logged as
    failed."""
    caplog.set_level(logging.DEBUG, logger="personify.sources.webhooks")
    url, session = served
    first = order(5000, "10.00")
    assert post(url, "shop_hooks", first, shopify_headers(first, "d-r1")).status_code == 200
    wait_for(lambda: customer_orders(session) == [("ann@example.org", 1, 10.0)], "the first")
    source = SOURCES[0]
    receiver = WebhookReceiver(session)
    body = order(5001, "30.00")
    verified = verify(source, shopify_headers(body, "d-r2"), body)
    receipt = receiver.receive(source, verified, body, refresh=False)  # as the route does
    assert receipt.outcome == "accepted"
    rewrite = lambda: session.warehouse.execute(  # noqa: E731
        "DELETE FROM customers WHERE email = 'ann@example.org'"
    )
    with ThreadPoolExecutor(1) as pool, holding(session, rewrite):
        applied = pool.submit(receiver.refresh, source, receipt)
        wait_for(lambda: conflicts(caplog) >= 1, "the apply to meet the other transaction")
        assert not applied.done()
    assert applied.result(60) is True
    assert receiver.conflicts >= 1 and receiver.failures == 0
    assert customer_orders(session) == [("ann@example.org", 2, 40.0)]
    assert failures(caplog) == []
    receiver.close()


def test_a_real_time_apply_beside_the_batch_build_lands_once_the_build_commits(
    served: tuple[str, Session], caplog: pytest.LogCaptureFixture
) -> None:
    """The batch profile build (``personify run``, serve's recompute) holds the buyer's customer
    row when her next delivery's real-time apply needs it: the apply waits (or backs off and runs
    again), and its value lands once the build commits — nothing logged as failed."""
    caplog.set_level(logging.DEBUG, logger="personify.sources.webhooks")
    url, session = served
    first = order(4001, "10.00")
    assert post(url, "shop_hooks", first, shopify_headers(first, "d-b1")).status_code == 200
    wait_for(lambda: customer_orders(session) == [("ann@example.org", 1, 10.0)], "the first")
    (customer,) = session.warehouse.fetch("SELECT customer_id FROM customers")[0]
    second = order(4002, "15.00")
    build = lambda: build_customers(session.warehouse, session.project, [customer])  # noqa: E731
    with holding(session, build):
        r = post(url, "shop_hooks", second, shopify_headers(second, "d-b2"))
        assert r.json()["status"] == "accepted"
        time.sleep(1.0)
        assert customer_orders(session) == [("ann@example.org", 1, 10.0)]
    wait_for(lambda: customer_orders(session) == [("ann@example.org", 2, 25.0)], "the second")
    assert failures(caplog) == []


@pytest.mark.parametrize("flaw", ["tampered", "wrong_secret", "stale", "no_signature", "no_id"])
def test_forged_tampered_or_stale_shopify_deliveries_change_nothing(
    served: tuple[str, Session], flaw: str
) -> None:
    url, session = served
    body = order(1004)
    headers = shopify_headers(body, "d-4", age=400 if flaw == "stale" else 0)
    if flaw == "tampered":
        body = body.replace(b"30.00", b"0.01")
    elif flaw == "wrong_secret":
        headers = shopify_headers(body, "d-4", secret="guess")
    elif flaw == "no_signature":
        del headers["X-Shopify-Hmac-Sha256"]
    elif flaw == "no_id":
        del headers["X-Shopify-Webhook-Id"]
    r = post(url, "shop_hooks", body, headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_signature"
    assert count(session, "orders") == 0 and count(session, "webhook_receipts") == 0


def test_an_invalid_record_is_quarantined_with_its_reason(served: tuple[str, Session]) -> None:
    url, session = served
    record = json.loads(order(1005))
    record["created_at"] = "yesterday"
    body = json.dumps(record).encode()
    r = post(url, "shop_hooks", body, shopify_headers(body, "d-5"))
    assert r.status_code == 200
    assert r.json()["quarantined"] == 1  # the order; its line items are fine
    reason, detail = session.warehouse.fetch("SELECT reason, detail FROM quarantine")[0]
    assert reason == "invalid_type" and "created_at" in detail
    assert count(session, "orders") == 0


def test_a_signed_body_that_is_not_json_is_quarantined(served: tuple[str, Session]) -> None:
    url, session = served
    body = b"not json at all"
    r = post(url, "shop_hooks", body, shopify_headers(body, "d-6"))
    assert r.status_code == 200
    assert r.json()["status"] == "quarantined" and r.json()["reason"] == "malformed_json"
    assert count(session, "quarantine") == 1
    assert post(url, "shop_hooks", body, shopify_headers(body, "d-6")).json()["status"] == (
        "duplicate"
    )


# ------------------------------------------------------------------------------------- Stripe
def stripe_event(charge_id: str, event_id: str = "evt_1") -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "charge.succeeded",
            "data": {
                "object": {
                    "id": charge_id,
                    "object": "charge",
                    "amount": 1999,
                    "currency": "eur",
                    "status": "succeeded",
                    "customer": "cus_1",
                    "created": int(time.time()),
                }
            },
        }
    )


def test_a_delivery_signed_by_the_stripe_library_is_accepted(
    served: tuple[str, Session],
) -> None:
    url, session = served
    payload = stripe_event("ch_1")
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)
    r = post(url, "stripe_hooks", payload.encode(), {"Stripe-Signature": header})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "evt_1"
    assert session.warehouse.fetch("SELECT order_id, total FROM orders") == [("ch_1", 19.99)]
    again = post(url, "stripe_hooks", payload.encode(), {"Stripe-Signature": header})
    assert again.json()["status"] == "duplicate"


def test_our_stripe_signature_is_what_the_stripe_library_accepts() -> None:
    payload = stripe_event("ch_2")
    header = sign_stripe(STRIPE_SECRET, payload.encode(), int(time.time()))
    event = stripe.Webhook.construct_event(payload, header, STRIPE_SECRET)
    assert event["id"] == "evt_1"


@pytest.mark.parametrize("flaw", ["stale", "future", "tampered", "no_v1"])
def test_bad_stripe_deliveries_get_401(served: tuple[str, Session], flaw: str) -> None:
    url, session = served
    payload = stripe_event("ch_3")
    stamp = int(time.time()) + {"stale": -301, "future": 310}.get(flaw, 0)
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET, stamp)
    if flaw == "tampered":
        payload = payload.replace("1999", "1")
    if flaw == "no_v1":
        header = header.replace("v1=", "v0=")
    r = post(url, "stripe_hooks", payload.encode(), {"Stripe-Signature": header})
    assert r.status_code == 401
    assert count(session, "orders") == 0


def test_a_stripe_header_with_several_signatures_verifies_with_any(
    served: tuple[str, Session],
) -> None:
    url, session = served
    payload = stripe_event("ch_4", "evt_4")
    header = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_SECRET)
    header = header.replace("v1=", "v1=" + "0" * 64 + ",v1=")
    r = post(url, "stripe_hooks", payload.encode(), {"Stripe-Signature": header})
    assert r.status_code == 200


# --------------------------------------------------------------------------- Standard Webhooks
def standard(secret: str, msg_id: str, body: str, *, at: datetime | None = None) -> dict[str, str]:
    when = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
    }


def ticket(ticket_id: int, subject: str = "Where is my parcel?") -> str:
    data = {"id": ticket_id, "subject": subject, "created_at": "2026-01-02T03:04:05Z"}
    return json.dumps({"type": "ticket.updated", "data": data})


def test_standard_webhooks_signed_with_either_secret_of_a_rotation(
    served: tuple[str, Session],
) -> None:
    url, session = served
    body = ticket(1)
    assert (
        post(url, "tickets_hooks", body.encode(), standard(STANDARD_NEW, "m1", body)).json()[
            "status"
        ]
        == "accepted"
    )
    body = ticket(2)
    assert (
        post(url, "tickets_hooks", body.encode(), standard(STANDARD_OLD, "m2", body)).json()[
            "status"
        ]
        == "accepted"
    )
    body = ticket(3)
    both = standard(STANDARD_NEW, "m3", body)
    old = standard(STANDARD_OLD, "m3", body)["webhook-signature"]
    both["webhook-signature"] = f"{old} {both['webhook-signature']}"
    assert post(url, "tickets_hooks", body.encode(), both).status_code == 200
    assert count(session, "tickets") == 3


def test_our_standard_signature_is_what_the_library_verifies() -> None:
    body = ticket(9)
    stamp = int(time.time())
    headers = {
        "webhook-id": "m9",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(STANDARD_NEW, "m9", stamp, body.encode()),
    }
    assert Webhook(STANDARD_NEW).verify(body, headers)["data"]["id"] == 9


@pytest.mark.parametrize("flaw", ["stale", "unknown_secret", "tampered", "id_changed"])
def test_bad_standard_deliveries_get_401(served: tuple[str, Session], flaw: str) -> None:
    url, session = served
    body = ticket(4)
    at = datetime.now(UTC) - timedelta(seconds=400 if flaw == "stale" else 0)
    other = "whsec_" + "c29tZW9uZS1lbHNlcy1rZXk="
    headers = standard(other if flaw == "unknown_secret" else STANDARD_NEW, "m4", body, at=at)
    if flaw == "tampered":
        body = ticket(4, "changed")
    if flaw == "id_changed":
        headers["webhook-id"] = "m5"
    assert post(url, "tickets_hooks", body.encode(), headers).status_code == 401
    assert count(session, "tickets") == 0


def test_unknown_source_and_oversized_bodies(served: tuple[str, Session]) -> None:
    url, _ = served
    assert post(url, "nope", b"{}", {}).status_code == 404
    body = ticket(5, "x" * 20_000)
    r = post(url, "tickets_hooks", body.encode(), standard(STANDARD_NEW, "m6", body))
    assert r.status_code == 413
