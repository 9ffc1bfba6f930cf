"""Webhooks through the bus: with ``bus: nats://…`` the ingest processes (``serve --role
ingest``) verify each signed delivery and publish it to JetStream (message id: the source and the
delivery id) instead of storing it; two workers store and apply them — exactly once, while a
sender retries deliveries against the other ingest process and one worker is killed and
restarted. Real PostgreSQL (a schema of the test's own) and NATS JetStream (a stream of its own)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from personify.sources.webhooks import sign_shopify
from personify.warehouse import connect
from tests.e2e.cli import project_on, spawn_serve, start_server, stop_all
from tests.e2e.test_scale_out import NATS, stream  # noqa: F401  (the fixture)

SECRET = "shpss_bus_test_secret"
HOOKS = f"""
  - name: shop_hooks
    kind: webhook
    scheme: shopify
    secrets: ["{SECRET}"]
    table: orders
    mapping:
      order_id: id|string
      email: email
      status: financial_status
      currency: currency
      total: total_price
      created_at: created_at
      source_customer_id: customer.id|string
"""
ORDERS = 60


def delivery(i: int) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC).isoformat()
    body = json.dumps(
        {
            "id": 7000 + i,
            "email": f"buyer{i % 20}@example.org",  # 20 customers, 3 orders each
            "financial_status": "paid",
            "currency": "EUR",
            "total_price": "12.50",
            "customer": {"id": 900 + i % 20},
            "created_at": now,
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Hmac-Sha256": sign_shopify(SECRET, body),
        "X-Shopify-Webhook-Id": f"bus-delivery-{i}",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Triggered-At": now,
    }
    return body, headers


async def on_the_bus(name: str) -> dict[str, int]:
    """Messages per subject in the stream ``name``."""
    import nats

    nc = await nats.connect(NATS)
    try:
        info = await nc.jetstream().stream_info(name, subjects_filter=">")
        return dict(info.state.subjects or {})
    finally:
        await nc.close()


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_webhooks_on_the_bus_are_stored_and_applied_exactly_once(
    postgres_url: str,
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    project = project_on(
        tmp_path / "shop", warehouse=postgres_url, bus=f"{NATS}?stream={stream}&ack_wait=2"
    )
    yml = project / "personify.yml"
    anchor = "    tracking_plan: tracking-plan\n"
    yml.write_text(yml.read_text().replace(anchor, anchor + HOOKS.lstrip("\n"), 1))
    connect(postgres_url).close()  # migrated once, before the processes start
    workers = [spawn_serve(project, tmp_path / f"worker{i}.log", role="worker") for i in range(2)]
    ingest = [
        start_server(project, tmp_path / f"ingest{i}.log", role="ingest", timeout=120)
        for i in range(2)
    ]
    try:
        outcomes: dict[str, int] = {}
        with httpx.Client(timeout=30, trust_env=False) as http:
            # the route refuses a forged delivery before anything reaches the bus
            body, headers = delivery(0)
            forged = {**headers, "X-Shopify-Hmac-Sha256": sign_shopify("not-the-secret", body)}
            refused = http.post(
                ingest[0].url + "/webhooks/shop_hooks", content=body, headers=forged
            )
            assert refused.status_code == 401
            for i in range(ORDERS):
                body, headers = delivery(i)
                r = http.post(
                    ingest[i % 2].url + "/webhooks/shop_hooks", content=body, headers=headers
                )
                assert r.status_code == 200, r.text
                outcomes[r.json()["status"]] = outcomes.get(r.json()["status"], 0) + 1
                if i % 4 == 0:  # the sender retries (it missed the answer) at the other process
                    again = http.post(
                        ingest[(i + 1) % 2].url + "/webhooks/shop_hooks",
                        content=body,
                        headers=headers,
                    )
                    assert again.json() == {"status": "duplicate", "id": f"bus-delivery-{i}"}
                if i == ORDERS // 2:
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait(10)
                    workers[0] = spawn_serve(project, tmp_path / "worker0b.log", role="worker")
        assert outcomes == {"accepted": ORDERS}
        wh = connect(postgres_url)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                spent = wh.fetch(
                    "SELECT count(*), coalesce(sum(order_count), 0) FROM customers "
                    "WHERE order_count > 0"
                )[0]
                if tuple(spent) == (20, ORDERS):
                    break
                time.sleep(0.25)
            time.sleep(2.5)  # past ack_wait: any redelivery would have landed
            receipts = wh.fetch(
                "SELECT count(*), count(DISTINCT webhook_id) FROM webhook_receipts "
                "WHERE source = 'shop_hooks'"
            )[0]
            orders = wh.fetch("SELECT count(*), count(DISTINCT order_id) FROM orders")[0]
            customers = wh.fetch(
                "SELECT count(*), sum(order_count), min(order_count), max(order_count) "
                "FROM customers WHERE order_count > 0"
            )[0]
        finally:
            wh.close()
        # every delivery went through the bus, once (the retries were JetStream's duplicates)
        assert asyncio.run(on_the_bus(stream)) == {f"{stream}.webhooks": ORDERS}
        assert tuple(receipts) == (ORDERS, ORDERS)  # each delivery stored once
        assert tuple(orders) == (ORDERS, ORDERS)
        # applied by the workers' continuous mode (no batch run): 20 buyers, 3 orders each
        assert tuple(customers) == (20, ORDERS, 3, 3)
    finally:
        stop_all(workers, ingest)


SHOP = """
  - name: shop
    kind: rest
    preset: shopify_orders
    client:
      base_url: {url}
      auth: {{type: api_key, name: X-Shopify-Access-Token, api_key: "{token}"}}
      requests_per_second: 1000
    schedule: {{every: 1s}}
"""


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_sync_on_an_ingest_process_is_applied_by_a_worker(
    postgres_url: str,
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An ingest process runs the scheduled syncs but no continuous mode: it announces each sync
    that stored rows on the bus, and a worker applies them (the order reaches its buyer's
    profile with no batch run)."""
    from personify.demo.mock_apis import TOKEN, MockApis, serve_mock_apis

    shop = MockApis()
    with serve_mock_apis(shop) as url:
        project = project_on(
            tmp_path / "shop", warehouse=postgres_url, bus=f"{NATS}?stream={stream}&ack_wait=2"
        )
        yml = project / "personify.yml"
        anchor = "    tracking_plan: tracking-plan\n"
        source = SHOP.format(url=url, token=TOKEN).lstrip("\n")
        yml.write_text(yml.read_text().replace(anchor, anchor + source, 1))
        connect(postgres_url).close()
        worker = spawn_serve(project, tmp_path / "worker.log", role="worker")
        ingest = start_server(project, tmp_path / "ingest.log", role="ingest", timeout=120)
        try:
            now = datetime.now(UTC).isoformat()
            shop.upsert(
                "orders",
                {
                    "id": 5_900_000_777,
                    "email": "synced@example.org",
                    "cart_token": "cart-777",
                    "financial_status": "paid",
                    "currency": "EUR",
                    "total_price": "42.00",
                    "customer": {"id": 777},
                    "created_at": now,
                    "line_items": [{"id": 1, "product_id": 9, "quantity": 1, "price": "42.00"}],
                },
            )
            wh = connect(postgres_url)
            try:
                deadline = time.monotonic() + 60
                found: list[tuple[object, ...]] = []
                while time.monotonic() < deadline and not found:
                    found = wh.fetch(
                        "SELECT order_count, total_spent FROM customers "
                        "WHERE email = 'synced@example.org' AND order_count > 0"
                    )
                    time.sleep(0.25)
            finally:
                wh.close()
            assert found and tuple(found[0]) == (1, 42.0), ingest.output()
            assert asyncio.run(on_the_bus(stream)).get(f"{stream}.synced", 0) >= 1
        finally:
            stop_all([worker], [ingest])


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_shopify_resend_under_its_event_id_is_a_duplicate_through_the_bus_too(
    postgres_url: str,
    stream: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A delivery stored under its webhook id alone (sent without ``X-Shopify-Event-Id``, or
    stored before the event id was preferred) and resent with its event id is a duplicate when
    a worker stores it from the bus, as on the direct path: the ingest process publishes the
    delivery's other ids (its webhook id) with it, and the worker finds the receipt under them."""
    project = project_on(
        tmp_path / "shop", warehouse=postgres_url, bus=f"{NATS}?stream={stream}&ack_wait=2"
    )
    yml = project / "personify.yml"
    anchor = "    tracking_plan: tracking-plan\n"
    yml.write_text(yml.read_text().replace(anchor, anchor + HOOKS.lstrip("\n"), 1))
    connect(postgres_url).close()
    worker = spawn_serve(project, tmp_path / "worker.log", role="worker")
    ingest = start_server(project, tmp_path / "ingest.log", role="ingest", timeout=120)
    wh = connect(postgres_url)

    def receipts() -> list[tuple[object, ...]]:
        return [
            tuple(r)
            for r in wh.fetch(
                "SELECT webhook_id, outcome FROM webhook_receipts WHERE source = 'shop_hooks' "
                "ORDER BY webhook_id"
            )
        ]

    def waited(check: object, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not check():  # type: ignore[operator]
            time.sleep(0.2)
        assert check(), ingest.output()  # type: ignore[operator]

    try:
        body, headers = delivery(1)  # (X-Shopify-Webhook-Id bus-delivery-1, no event id)
        url = ingest.url + "/webhooks/shop_hooks"
        with httpx.Client(timeout=30, trust_env=False) as http:
            first = http.post(url, content=body, headers=headers)
            assert first.json() == {"status": "accepted", "id": "bus-delivery-1"}
            waited(lambda: receipts() == [("bus-delivery-1", "accepted")])
            waited(lambda: bool(wh.fetch("SELECT 1 FROM orders WHERE order_id = '7001'")))
            wh.execute("UPDATE orders SET total = 1 WHERE order_id = '7001'")
            # Shopify resends it, now with its event id: a new message to the bus (its id is
            # the event's), the same delivery to the worker
            resent = {**headers, "X-Shopify-Event-Id": "ev-1"}
            again = http.post(url, content=body, headers=resent)
            assert again.json() == {"status": "accepted", "id": "orders/create:ev-1"}
            # another delivery after it: once it is stored, the resend was handled before it
            later, later_headers = delivery(2)
            assert http.post(url, content=later, headers=later_headers).status_code == 200
            waited(lambda: len(receipts()) == 2)
        time.sleep(2.5)  # (past ack_wait: a redelivery would have landed)
        assert asyncio.run(on_the_bus(stream)) == {f"{stream}.webhooks": 3}
        assert receipts() == [("bus-delivery-1", "accepted"), ("bus-delivery-2", "accepted")]
        # the resend stored nothing again
        assert wh.scalar("SELECT total FROM orders WHERE order_id = '7001'") == 1.0
    finally:
        wh.close()
        stop_all([worker], [ingest])
