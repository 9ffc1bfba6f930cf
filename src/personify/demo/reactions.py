"""The demo's recipients react to their abandoned-cart emails: opens, clicks and purchases.

After the journeys have sent, :func:`simulate_reactions` decides for every abandoned-cart
message — sent, or held out (``skipped_holdout``, the 20 % of carts the demo's experiment keeps
from the email) — whether its customer opens, clicks and buys the cart; and whether a machine
prefetches the pixel (:data:`P_PREFETCH`) or a scanner follows a link (:data:`P_SCAN`): those are
flagged when recorded and left out of the report. The effect of the email is
built in: anyone buys their cart on their own with probability :data:`BASELINE`; a recipient
also opens (:data:`P_OPEN`), clicks (:data:`P_CLICK`, once opened) and buys after the click
(:data:`P_BUY`). The draws come from a generator seeded by the world's seed and the message's key,
so they are the same on every run and do not depend on which other messages exist.

The reactions go through the real paths, to the project's own API served from this process
(:func:`personify.server.background.background_server`, its clock pinned to
:data:`REACT_AFTER` after the send): an open is a ``GET`` of the pixel ``/o/TOKEN.gif`` and a
click a ``GET`` of a ``/c/TOKEN`` link, both read from the rendered ``.eml`` in the outbox; a
purchase is a signed Shopify-style order webhook (``orders``) and an ``Order Completed`` event
(``POST /v1/batch``) with the cart's items, placed some time after the click. Run again, the
same requests store nothing twice (hit ids are per minute and client, the webhook's delivery id
and the event's ``messageId`` are the purchase's). :data:`REPORT_AFTER` after the send, the
attribution window has closed: the report (:func:`personify.engagement.report.journeys_report`)
is read then.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from personify.session import Session

JOURNEY: Final = "abandoned_cart"
BASELINE: Final = 0.10
"""Chance that a shopper buys the abandoned cart without any email (holdout or not)."""
P_OPEN: Final = 0.60
"""Chance that a recipient opens the email (loads its pixel)."""
P_CLICK: Final = 0.50
"""Chance that a recipient who opened it follows a link."""
P_BUY: Final = 0.60
"""Chance that a recipient who clicked buys the cart."""
REACT_AFTER: Final = timedelta(hours=3)
"""When the recipients open and click, after the send."""
REPORT_AFTER: Final = timedelta(days=3)
"""When the report is read, after the send (the attribution window, 3 days, has closed)."""
AGENT: Final = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
P_PREFETCH: Final = 0.25
"""Chance that the recipient's mail provider prefetches the pixel (Apple Mail Privacy
Protection: a bare ``Mozilla/5.0``) — a machine open, kept out of the figures."""
P_SCAN: Final = 0.05
"""Chance that a security gateway follows the first link — a scanner click, kept out too."""
PREFETCH_AGENT: Final = "Mozilla/5.0"
SCANNER_AGENT: Final = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
_PIXEL = re.compile(r"/o/([A-Za-z0-9_.~=-]+)\.gif")
_CLICK = re.compile(r"/c/([A-Za-z0-9_.~=-]+)")


@dataclass(frozen=True)
class Reactions:
    """What the simulated recipients did."""

    messages: int
    """Abandoned-cart messages considered (sent and held out)."""
    held_out: int
    opens: int
    clicks: int
    purchases: int
    """Carts bought within the window (recipients and holdout)."""
    held_out_purchases: int
    machine_hits: int
    """Machine opens and scanner clicks among the hits (recorded, flagged, not counted)."""
    requests: int
    """HTTP requests made (pixels, redirects, webhooks, the event batch)."""
    reacted_at: datetime
    report_at: datetime


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return np.random.default_rng([seed, digest])


def tracking_links(eml: Path) -> tuple[str | None, list[str]]:
    """The pixel path and the click paths of a rendered message (its HTML part, decoded)."""
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    html = ""
    for part in message.walk():
        if part.get_content_type() == "text/html":
            html += str(part.get_content())
    pixel = _PIXEL.search(html)
    clicks = list(dict.fromkeys(f"/c/{m}" for m in _CLICK.findall(html)))
    return (f"/o/{pixel.group(1)}.gif" if pixel else None), clicks


def _carts(session: Session, carts: list[str]) -> dict[str, dict[str, Any]]:
    """Per cart: its items (from its ``Product Added`` events) and its shopper's ids."""
    out: dict[str, dict[str, Any]] = {}
    if not carts:
        return out
    marks = ", ".join("?" for _ in carts)
    rows = session.warehouse.fetch(
        "SELECT properties->>'cart_id', user_id, anonymous_id, properties FROM events "
        "WHERE type = 'track' AND event = 'Product Added' "
        f"AND properties->>'cart_id' IN ({marks}) ORDER BY timestamp, message_id",
        list(carts),
    )
    for cart, user_id, anonymous_id, properties in rows:
        props = properties if isinstance(properties, dict) else json.loads(str(properties))
        found = out.setdefault(
            str(cart), {"user_id": user_id, "anonymous_id": anonymous_id, "items": {}}
        )
        product = str(props.get("product_id", ""))
        item = found["items"].setdefault(
            product,
            {
                k: props[k]
                for k in ("product_id", "sku", "name", "category", "price")
                if props.get(k) is not None
            }
            | {"quantity": 0},
        )
        item["quantity"] += int(props.get("quantity") or 1)
    return out


def simulate_reactions(session: Session, *, seed: int, sent_at: datetime) -> Reactions:
    """Simulate the reactions to the abandoned-cart messages decided up to ``sent_at`` (the
    demo's instant) and send them through the project's API (module docstring)."""
    import httpx

    from personify.config import OutboxDelivery
    from personify.delivery.outbox import file_name
    from personify.demo.mock_apis import _WEBHOOK_SECRET, WEBHOOK_SOURCE
    from personify.server.background import background_server
    from personify.sources.webhooks import sign_shopify

    project = session.project
    reacted_at = sent_at + REACT_AFTER
    rows = session.warehouse.fetch(
        "SELECT m.idempotency_key, m.customer_id, m.trigger_key, m.status, c.email "
        "FROM messages m LEFT JOIN customers c ON c.customer_id = m.customer_id "
        "WHERE m.journey = ? AND m.status IN ('sent', 'skipped_holdout') "
        "AND m.decided_at <= CAST(? AS TIMESTAMPTZ) ORDER BY m.idempotency_key",
        [JOURNEY, sent_at],
    )
    carts = _carts(session, sorted({str(r[2]) for r in rows if r[2]}))
    delivery = project.config.delivery
    outbox = project.path(delivery.path) if isinstance(delivery, OutboxDelivery) else None
    hits: list[tuple[str, str]] = []
    machine = 0
    purchases: list[tuple[str, str | None, str, dict[str, Any], datetime]] = []
    held_out = opens = clicks = held_out_bought = 0
    for key, customer_id, cart_id, status, address in rows:
        rng = _rng(seed, str(key))
        cart = carts.get(str(cart_id))
        draws = rng.random(4)
        when = sent_at + timedelta(hours=float(1 + 60 * draws[3]))
        bought = bool(draws[0] < BASELINE)
        if status == "skipped_holdout":
            held_out += 1
            held_out_bought += int(bought and cart is not None)
        else:
            eml = None if outbox is None else outbox / file_name(str(key))
            pixel, links = tracking_links(eml) if eml and eml.is_file() else (None, [])
            bots = _rng(seed, f"machine\0{key}").random(2)  # apart: the people's draws stay
            if pixel is not None and bots[0] < P_PREFETCH:
                machine += 1
                hits.append((pixel, PREFETCH_AGENT))
            if links and bots[1] < P_SCAN:
                machine += 1
                hits.append((links[0], SCANNER_AGENT))
            if pixel is not None and draws[1] < P_OPEN:
                opens += 1
                hits.append((pixel, AGENT))
                if links and draws[2] < P_CLICK:
                    clicks += 1
                    hits.append((links[int(rng.integers(len(links)))], AGENT))
                    if rng.random() < P_BUY:
                        bought = True
                        when = reacted_at + timedelta(minutes=float(rng.uniform(5, 360)))
        if bought and cart is not None:
            purchases.append((str(customer_id), address, str(cart_id), cart, when))
    requests = 0
    with (
        background_server(session, now=reacted_at) as url,
        httpx.Client(base_url=url, timeout=30, headers={"User-Agent": AGENT}) as client,
    ):
        for path, agent in hits:
            answer = client.get(path, headers={"User-Agent": agent})  # a click: 302, not followed
            if answer.status_code not in (200, 302):
                answer.raise_for_status()
                raise RuntimeError(f"{path[:3]}… answered {answer.status_code}")
            requests += 1
        events = []
        for customer_id, address, cart_id, cart, when in purchases:
            order = _order(customer_id, address, cart_id, cart, when)
            body = json.dumps(order).encode()
            client.post(
                f"/webhooks/{WEBHOOK_SOURCE}",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Webhook-Id": f"orders-create-{order['id']}",
                    "X-Shopify-Hmac-Sha256": sign_shopify(_WEBHOOK_SECRET, body),
                },
            ).raise_for_status()
            requests += 1
            events.append(_event(order, cart, cart_id))
        if events:
            from personify.demo.project import _keys

            key = _keys(project.root)["PERSONIFY_WRITE_KEY"]
            client.post("/v1/batch", json={"batch": events}, auth=(key, "")).raise_for_status()
            requests += 1
    return Reactions(
        messages=len(rows),
        held_out=held_out,
        opens=opens,
        clicks=clicks,
        purchases=len(purchases),
        held_out_purchases=held_out_bought,
        machine_hits=machine,
        requests=requests,
        reacted_at=reacted_at,
        report_at=sent_at + REPORT_AFTER,
    )


def _order(
    customer_id: str, address: str | None, cart_id: str, cart: dict[str, Any], when: datetime
) -> dict[str, Any]:
    """The Shopify-style order of a bought cart (its id derived from the cart: a rerun sends
    the same order)."""
    digest = hashlib.sha256(f"demo-order\0{cart_id}".encode()).hexdigest()
    order_id = 8_000_000_000_000 + int(digest[:12], 16) % 1_000_000_000_000
    items = list(cart["items"].values())
    total = round(sum(float(i.get("price", 0)) * int(i["quantity"]) for i in items), 2)
    stamp = when.isoformat().replace("+00:00", "Z")
    shop_id = cart.get("user_id")
    return {
        "id": order_id,
        "email": address,
        "financial_status": "paid",
        "currency": "EUR",
        "subtotal_price": f"{total:.2f}",
        "total_discounts": "0.00",
        "total_price": f"{total:.2f}",
        "created_at": stamp,
        "updated_at": stamp,
        "customer": {"id": int(str(shop_id))} if str(shop_id or "").isdigit() else None,
        "note_attributes": [{"name": "cart_id", "value": cart_id}],
        "line_items": [
            {
                "sku": i.get("sku"),
                "title": i.get("name"),
                "price": f"{float(i.get('price', 0)):.2f}",
                "quantity": i["quantity"],
            }
            for i in items
        ],
    }


def _event(order: dict[str, Any], cart: dict[str, Any], cart_id: str) -> dict[str, Any]:
    """The shop page's ``Order Completed`` event of ``order``."""
    event: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"demo-order-{order['id']}",
        "timestamp": order["created_at"],
        "properties": {
            "order_id": str(order["id"]),
            "cart_id": cart_id,
            "total": float(order["total_price"]),
            "revenue": float(order["total_price"]),
            "currency": "EUR",
            "products": list(cart["items"].values()),
        },
    }
    if cart.get("user_id"):
        event["userId"] = str(cart["user_id"])
    if cart.get("anonymous_id"):
        event["anonymousId"] = str(cart["anonymous_id"])
    return event
