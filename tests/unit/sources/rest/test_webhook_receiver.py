"""The webhook receiver without HTTP: each delivery is stored with its own arrival time, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

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
