"""Orders and their line items (Shopify-style), one per completed cart.

An order holds exactly the products, quantities and catalogue prices of its cart's Product Added
events, and is created at its Order Completed event. About 15 % use a discount code. Order
numbers (``#1001`` …) and ids grow with time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from personify.demo import _text as tx
from personify.demo._vocab import CURRENCY, DISCOUNT_CODES
from personify.demo.behaviour import Behaviour
from personify.demo.catalog import DAY_MS, Catalog
from personify.demo.people import CHAMPION, VIP, People, dirt

FINANCIAL = ("paid", "refunded", "partially_refunded", "pending")


@dataclass(frozen=True)
class Orders:
    """Orders by order index (the order the behaviour generator created them in, i.e. by time),
    and the wire tables."""

    table: pa.Table
    """``id, name, customer_id, email, cart_token, financial_status, fulfillment_status,
    currency, subtotal_price, total_discounts, total_price, discount_code, created_at,
    updated_at`` — sorted by ``updated_at``."""
    items: pa.Table
    """``order_id, line_number, product_id, sku, title, quantity, price`` — by order, then line."""
    id_num: np.ndarray
    cart: np.ndarray
    person: np.ndarray
    created_ms: np.ndarray
    subtotal: np.ndarray
    discount: np.ndarray
    total: np.ndarray
    coupon: np.ndarray
    """Index into ``DISCOUNT_CODES``; -1 for none."""

    @property
    def size(self) -> int:
        return len(self.cart)

    def ids(self, order: np.ndarray) -> pa.Array:
        return tx.ints(self.id_num[order])

    def coupons(self, order: np.ndarray) -> pa.Array:
        code = self.coupon[order]
        return tx.null_where(code < 0, tx.pick([c for c, _ in DISCOUNT_CODES], np.maximum(code, 0)))


def cart_ids(cart: np.ndarray, salt: int) -> pa.Array:
    """Cart tokens, stable for a seed."""
    return tx.hex_ids(tx.mix64(cart, salt), 16, "c1-")


def build_orders(
    rng: np.random.Generator,
    people: People,
    catalog: Catalog,
    behaviour: Behaviour,
    now_ms: int,
    salt: int,
) -> Orders:
    sessions, carts = behaviour.sessions, behaviour.carts
    placed = np.flatnonzero(sessions.order >= 0)
    cart = sessions.cart[placed]
    person = sessions.person[placed]
    created = carts.completed_ms[cart]
    n = len(placed)
    number = np.empty(n, np.int64)
    number[tx.stable_argsort(created)] = np.arange(n)
    id_num = 5_900_000_000_000 + number * 131 + rng.integers(0, 131, n)
    subtotal = carts.subtotal[cart]
    use = rng.random(n) < 0.15
    code = np.where(np.isin(people.cohort[person], [VIP, CHAMPION]), 2, rng.integers(0, 2, n))
    rate = np.where(use, np.array([r for _, r in DISCOUNT_CODES])[code], 0.0)
    discount = np.round(subtotal * rate, 2)
    total = np.round(subtotal - discount, 2)
    status = rng.choice(4, n, p=[0.9, 0.04, 0.02, 0.04])
    updated = np.minimum(created + (rng.uniform(0, 5, n) * DAY_MS).astype(np.int64), now_ms - 1000)
    fulfilled = (status == 0) & (updated - created > DAY_MS)
    orders = Orders(
        table=pa.table({}),
        items=pa.table({}),
        id_num=id_num,
        cart=cart,
        person=person,
        created_ms=created,
        subtotal=subtotal,
        discount=discount,
        total=total,
        coupon=np.where(use, code, -1),
    )
    rows = tx.stable_argsort(updated)
    o = pa.array(rows)
    table = pa.table(
        {
            "id": orders.ids(rows),
            "name": tx.join("#", tx.ints(1001 + number[rows])),
            "customer_id": people.shop_ids(person[rows]),
            "email": people.emails(person[rows], dirt(rng, n)),
            "cart_token": cart_ids(cart[rows], salt),
            "financial_status": tx.pick(FINANCIAL, status[rows]),
            "fulfillment_status": tx.null_where(~fulfilled[rows], tx.pick(["fulfilled"], 0 * rows)),
            "currency": tx.pick([CURRENCY], 0 * rows),
            "subtotal_price": tx.money(subtotal).take(o),
            "total_discounts": tx.money(discount).take(o),
            "total_price": tx.money(total).take(o),
            "discount_code": orders.coupons(rows),
            "created_at": tx.timestamps(created[rows]),
            "updated_at": tx.timestamps(updated[rows]),
        }
    )
    items = _items(behaviour, catalog, orders, number)
    return dataclasses.replace(orders, table=table, items=items)


def item_rows(item_start: np.ndarray, cart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item indexes of the given carts (concatenated) and the position of each within its cart."""
    start = item_start[cart]
    count = item_start[cart + 1] - start
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + within, within


def _items(behaviour: Behaviour, catalog: Catalog, orders: Orders, number: np.ndarray) -> pa.Table:
    carts = behaviour.carts
    by_time = np.argsort(number)
    cart = orders.cart[by_time]
    rows, within = item_rows(carts.item_start, cart)
    count = carts.item_start[cart + 1] - carts.item_start[cart]
    product = carts.product[rows]
    return pa.table(
        {
            "order_id": orders.ids(np.repeat(by_time, count)),
            "line_number": pa.array(within + 1),
            "product_id": catalog.ids.take(pa.array(product)),
            "sku": catalog.skus.take(pa.array(product)),
            "title": catalog.names.take(pa.array(product)),
            "quantity": pa.array(carts.quantity[rows].astype(np.int64)),
            "price": tx.money(catalog.price[product]),
        }
    )
