"""What is in a cart now: ``Product Added`` minus ``Product Removed``, joined with the catalogue.

A cart is the set of track events carrying its ``cart_id`` (``properties.cart_id``). Per product,
adds count ``properties.quantity`` units (1 when absent) and removals subtract theirs; a removal
without a quantity takes the product out altogether. Products with a positive balance at ``now``
are in the cart (counting the events of the last ``LOOKBACK_DAYS`` only). Name, URL, image, price
and category come from ``products`` (the catalogue's current values), falling back to the latest
add event's properties for products the catalogue does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from personify.offers._sql import UNNEST, Sql
from personify.offers._state import active
from personify.warehouse import Warehouse
from personify.warehouse.sqltext import interval_days, numeric, prop

ADDED = "Product Added"
REMOVED = "Product Removed"
LOOKBACK_DAYS = 90
"""Cart events older than this are not read: carts are short-lived, and the bound lets the
warehouse skip the old part of ``events`` (zone maps, partitions)."""
ITEM_FIELDS = ("product_id", "name", "url", "image_url", "price", "quantity", "category")
"""The fields of one cart item."""


def moves_select(now: datetime, lookback_days: int, carts: str | None) -> Sql:
    """The SELECT of cart events (``cart_id, product_id, event, ts, message_id, qty, name, url,
    image_url, price, category``) of the ``lookback_days`` before ``now``: of the carts in the
    CTE ``carts`` (a ``cart_id`` column), or of every cart when ``None``."""
    only = f"AND {prop('cart_id')} IN (SELECT cart_id FROM {carts})" if carts else ""
    return (
        f"SELECT {prop('cart_id')} AS cart_id, {prop('product_id')} AS product_id, "
        f"e.event, e.timestamp AS ts, e.message_id, {numeric(prop('quantity'))} AS qty, "
        f"{prop('name')} AS name, {prop('url')} AS url, {prop('image_url')} AS image_url, "
        f"{numeric(prop('price'))} AS price, {prop('category')} AS category "
        "FROM events e WHERE e.type = 'track' "
        f"AND e.event IN ('{ADDED}', '{REMOVED}') AND e.timestamp <= CAST(? AS TIMESTAMPTZ) "
        f"AND e.timestamp > CAST(? AS TIMESTAMPTZ) - {interval_days(lookback_days)} "
        f"AND {prop('product_id')} IS NOT NULL AND {prop('cart_id')} IS NOT NULL {only}",
        [now, now],
    )


def cart_lines_sql(
    wh: Warehouse, carts: str, now: datetime, lookback_days: int = LOOKBACK_DAYS
) -> Sql:
    """CTEs (without ``WITH``) ending in ``cart_lines(cart_id, product_id, quantity,
    first_added)``: the products in each cart of the CTE ``carts`` (a ``cart_id`` column) whose
    balance is positive, from the events of the ``lookback_days`` before ``now`` (read from an
    active :func:`~personify.offers.snapshot.snapshot` when there is one for them)."""
    held = active(wh, now=now, window_days=None, lookback_days=lookback_days)
    if held is not None:
        moves: Sql = (
            f"SELECT * FROM {held.moves} WHERE cart_id IN (SELECT cart_id FROM {carts})",
            [],
        )
    else:
        moves = moves_select(now, lookback_days, carts)
    return (
        f"cart_moves AS ({moves[0]}), "
        "cart_resets AS (SELECT cart_id, product_id, max(ts) AS reset_at FROM cart_moves "
        f"WHERE event = '{REMOVED}' AND qty IS NULL GROUP BY cart_id, product_id), "
        "cart_lines AS (SELECT m.cart_id, m.product_id, "
        f"sum(CASE WHEN m.event = '{ADDED}' THEN coalesce(m.qty, 1) ELSE -m.qty END) AS quantity, "
        f"min(CASE WHEN m.event = '{ADDED}' THEN m.ts END) AS first_added "
        "FROM cart_moves m LEFT JOIN cart_resets r "
        "ON r.cart_id = m.cart_id AND r.product_id = m.product_id "
        "WHERE r.reset_at IS NULL OR m.ts > r.reset_at "
        "GROUP BY m.cart_id, m.product_id "
        "HAVING sum(CASE WHEN m.event = "
        f"'{ADDED}' THEN coalesce(m.qty, 1) ELSE -m.qty END) >= 1)",
        moves[1],
    )


def cart_contents(
    wh: Warehouse, cart_ids: Sequence[str], *, now: datetime, lookback_days: int = LOOKBACK_DAYS
) -> dict[str, list[dict[str, Any]]]:
    """Each cart's items at ``now``, in the order they were first added (then by product id).

    Every requested cart is a key of the result (an empty list when it holds nothing). Each item
    is ``{product_id, name, url, image_url, price, quantity, category}``. One statement for all
    the carts."""
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in cart_ids}
    if not out:
        return out
    lines, lines_params = cart_lines_sql(wh, "wanted", now, lookback_days)
    sql = (
        f"WITH wanted AS (SELECT DISTINCT {UNNEST} AS cart_id), "
        + lines
        + ", last_added AS (SELECT cart_id, product_id, name, url, image_url, price, category "
        "FROM (SELECT m.*, row_number() OVER (PARTITION BY cart_id, product_id "
        "ORDER BY ts DESC, message_id DESC) AS pos FROM cart_moves m "
        f"WHERE event = '{ADDED}') x WHERE pos = 1) "
        "SELECT l.cart_id, l.product_id, coalesce(p.name, a.name), coalesce(p.url, a.url), "
        "coalesce(p.image_url, a.image_url), coalesce(p.price, a.price), "
        "CAST(floor(l.quantity) AS BIGINT), coalesce(p.category, a.category) "
        "FROM cart_lines l "
        "LEFT JOIN last_added a ON a.cart_id = l.cart_id AND a.product_id = l.product_id "
        "LEFT JOIN products p ON p.product_id = l.product_id "
        "ORDER BY l.cart_id, l.first_added NULLS LAST, l.product_id"
    )
    for row in wh.fetch(sql, [list(out), *lines_params]):
        item = dict(zip(ITEM_FIELDS, row[1:], strict=True))
        if item["price"] is not None:
            item["price"] = float(item["price"])
        out[row[0]].append(item)
    return out
