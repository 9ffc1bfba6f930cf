"""The webhook receiver without HTTP: each delivery is stored with its own arrival time, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from personify import clock
from personify.config import Nested, Secret, WebhookSource
from personify.session import Session
from personify.sources.webhooks import Verified, WebhookReceiver

SOURCE = WebhookSource(
    name="app_hooks",
    scheme="standard",
    secrets=(Secret("whsec_c2VjcmV0"),),
    table="customers",
    mapping={"customer_id": "id", "first_name": "=Ann"},
)


def test_each_delivery_is_stored_at_its_own_arrival(session: Session) -> None:
    receiver = WebhookReceiver(session)
    first = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    second = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    try:
        for i, at in enumerate((first, second)):
            body = json.dumps({"id": f"c{i}", "email": f"ann{i}@example.org"})
            with clock.frozen(at):
                receipt = receiver.receive(SOURCE, Verified(f"d{i}", at), body.encode())
            assert receipt.outcome == "accepted"
        with clock.frozen(second):
            again = receiver.receive(SOURCE, Verified("d1", second), b"{}")
        assert again.outcome == "duplicate"
    finally:
        receiver.close()
    rows = session.warehouse.fetch(
        "SELECT record_id, first_name, observed_at, received_at FROM customer_records "
        "ORDER BY record_id"
    )
    assert [(r, f) for r, f, _, _ in rows] == [("c0", "Ann"), ("c1", "Ann")]
    # no updated_at in the record: observed (and received) when it arrived, not at start-up
    assert [r[2].astimezone(UTC) for r in rows] == [first, second]
    assert [r[3].astimezone(UTC) for r in rows] == [first, second]


def test_refreshes_arriving_together_are_applied_in_few_passes(session: Session) -> None:
    """Twelve person records stored, their real-time refreshes called at once from twelve
    threads: every one reports its record applied, in fewer passes than refreshes, and every
    record's customer is built."""
    import threading

    passes: list[list[str]] = []

    class Counting(WebhookReceiver):
        def _apply_keys(self, source: WebhookSource, keys: list[str]) -> bool:
            passes.append(keys)
            return super()._apply_keys(source, keys)

    receiver = Counting(session)
    try:
        receipts = [
            receiver.receive(
                SOURCE,
                Verified(f"r{i}", None),
                json.dumps({"id": f"p{i}", "email": f"p{i}@example.org"}).encode(),
                refresh=False,
            )
            for i in range(12)
        ]
        results: list[bool] = []
        start = threading.Barrier(12)

        def refresh(i: int) -> None:
            start.wait()
            results.append(receiver.refresh(SOURCE, receipts[i]))

        threads = [threading.Thread(target=refresh, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        receiver.close()
    assert results == [True] * 12
    assert sorted(k for keys in passes for k in keys) == sorted(f"p{i}" for i in range(12))
    assert len(passes) < 12 and receiver.failures == 0
    emails = session.warehouse.fetch("SELECT email FROM customers ORDER BY email")
    assert sorted(e for (e,) in emails) == sorted(f"p{i}@example.org" for i in range(12))


def test_a_deliverys_quarantine_rows_name_it_and_hold_its_body(session: Session) -> None:
    shop = WebhookSource(
        name="shop_hooks",
        scheme="shopify",
        secrets=(Secret("x"),),
        table="orders",
        mapping={"order_id": "id|string", "total": "total_price", "created_at": "created_at"},
        nested=(
            Nested(
                path="line_items",
                table="order_items",
                mapping={"order_id": "_parent.id|string", "line_no": "_index"},
            ),
        ),
    )
    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    body = json.dumps({"total_price": "9.00", "line_items": [{"quantity": 1}]}, indent=1)
    receiver = WebhookReceiver(session)
    try:
        for delivery in ("w10", "w11"):  # two deliveries of one bad body: two records of it
            with clock.frozen(at):
                receipt = receiver.receive(shop, Verified(delivery, at), body.encode())
            assert receipt.outcome == "quarantined"
        with clock.frozen(at):
            receiver.receive(shop, Verified("w12", at), b"not json")
    finally:
        receiver.close()
    held = session.warehouse.fetch("SELECT location, detail, payload FROM quarantine")
    assert sorted(location for location, _, _ in held) == [
        "shop_hooks/webhook.line_items:w10#1",
        "shop_hooks/webhook.line_items:w11#1",
        "shop_hooks/webhook:w10",
        "shop_hooks/webhook:w11",
        "shop_hooks/webhook:w12",
    ]
    for location, detail, payload in held:
        if location.endswith("w12"):
            assert payload == "not json"
            continue
        assert detail.startswith(location + ": "), detail
        assert payload == body  # as received, without the mapping's internal keys


# ------------------------------------------------------------------------------------- replay
def _shop(mapping: dict[str, str]) -> WebhookSource:
    return WebhookSource(
        name="shop_hooks",
        scheme="shopify",
        secrets=(Secret("x"),),
        table="orders",
        mapping=mapping,
        nested=(
            Nested(
                path="line_items",
                table="order_items",
                mapping={
                    "order_id": "_parent.number|string",
                    "line_no": "_index",
                    "product_id": "product_id|string",
                    "quantity": "quantity",
                    "price": "price",
                },
            ),
        ),
    )


BROKEN = _shop({"order_id": "id|string", "total": "total_price", "created_at": "created_at"})
FIXED = _shop({"order_id": "number|string", "total": "total_price", "created_at": "created_at"})


def test_a_quarantined_delivery_replayed_after_a_fix_is_stored_once(session: Session) -> None:
    """The shop sends ``number``, not ``id``: the order is quarantined (its line items load).
    After the mapping is fixed, replaying the delivery stores the order at its arrival time,
    empties its quarantine rows and records the new outcome; a second replay changes nothing."""
    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    body = json.dumps(
        {
            "number": 1001,
            "total_price": "9.00",
            "created_at": "2026-03-01T09:00:00Z",
            "line_items": [{"product_id": 7, "quantity": 1, "price": "9.00"}],
        }
    ).encode()
    receiver = WebhookReceiver(session)
    wh = session.warehouse
    try:
        with clock.frozen(at):
            first = receiver.receive(BROKEN, Verified("orders/create:77", at), body)
        assert first.outcome == "accepted" and first.quarantined == 1  # the order; items fine
        assert wh.scalar("SELECT count(*) FROM orders") == 0
    finally:
        receiver.close()
    fixed = WebhookReceiver(session)  # (a receiver keeps its sources' mappings compiled)
    try:
        with clock.frozen(at.replace(hour=15)):
            again = fixed.replay(FIXED, "orders/create:77", body)
            assert again.outcome == "accepted" and again.quarantined == 0
            assert fixed.replay(FIXED, "orders/create:77", body).quarantined == 0
    finally:
        fixed.close()
    assert wh.scalar("SELECT count(*) FROM quarantine") == 0
    rows = wh.fetch("SELECT order_id, received_at FROM orders")
    assert [(o, r.astimezone(UTC)) for o, r in rows] == [("1001", at)]  # arrival, not replay
    assert wh.scalar("SELECT count(*) FROM order_items") == 1
    assert wh.fetch("SELECT outcome, rows_quarantined FROM webhook_receipts") == [("accepted", 0)]


def test_a_delivery_still_bad_keeps_its_quarantine_rows_under_their_ids(session: Session) -> None:
    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    body = json.dumps({"total_price": "9.00", "line_items": [{"quantity": 1}]}).encode()
    receiver = WebhookReceiver(session)
    wh = session.warehouse
    try:
        with clock.frozen(at):
            receiver.receive(BROKEN, Verified("w1", at), body)
            receiver.receive(BROKEN, Verified("w2", at), body)  # another delivery: not touched
        before = wh.fetch("SELECT id, location, received_at FROM quarantine ORDER BY id")
        with clock.frozen(at.replace(hour=15)):
            receipt = receiver.replay(BROKEN, "w1", body)
    finally:
        receiver.close()
    assert receipt.outcome == "quarantined" and receipt.quarantined == 2
    assert wh.fetch("SELECT id, location, received_at FROM quarantine ORDER BY id") == before
    assert len(before) == 4


def test_a_quarantine_rows_delivery_is_read_off_its_location() -> None:
    from personify.sources.webhooks import delivery_of

    assert delivery_of("shop", "shop/webhook:d-1") == "d-1"
    assert delivery_of("shop", "shop/webhook:orders/create:123") == "orders/create:123"
    assert delivery_of("shop", "shop/webhook.line_items:orders/create:123#2") == (
        "orders/create:123"
    )
    assert delivery_of("shop", "shop/webhook:with#7") == "with#7"  # not nested: all of it
    assert delivery_of("shop", "other/webhook:d-1") is None
    assert delivery_of("shop", "shop/rest:12") is None
    assert delivery_of("shop", None) is None
    assert delivery_of("shop", "shop/webhook:") is None


def test_quarantine_replay_takes_webhook_deliveries_with_the_project_as_it_is_now(
    session: Session, tmp_path: Path
) -> None:
    """``personify quarantine replay``'s function: a bad body stays (reported with its reason),
    a delivery the project's mapping now reads is stored; rows of other kinds are skipped."""
    from personify.config import Project, ProjectConfig
    from personify.ingest.tracking.replay import replay

    at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    good = json.dumps(
        {"number": 5, "total_price": "1.00", "created_at": "2026-03-01T09:00:00Z", "line_items": []}
    ).encode()
    receiver = WebhookReceiver(session)
    try:
        with clock.frozen(at):
            receiver.receive(BROKEN, Verified("g1", at), good)
            receiver.receive(BROKEN, Verified("n1", at), b"not json")
    finally:
        receiver.close()
    wh = session.warehouse
    project = Project(ProjectConfig(sources=(FIXED,)), tmp_path, tmp_path / "personify.yml")
    report = replay(wh, project)
    assert report.looked_at == 2 and report.stored == 1
    assert [(r, d.split(":")[0]) for _, r, d in report.still_quarantined] == [
        ("malformed_json", "webhook n1")
    ]
    assert wh.fetch("SELECT order_id FROM orders") == [("5",)]
    assert replay(wh, project).stored == 0
