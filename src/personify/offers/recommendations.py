"""Recommendations for carts, in one SQL statement over every cart asked about.

For each cart, candidates come in three tiers, best first:

0. **co-occurrence** — products viewed by the same person (``Product Viewed`` by one customer, or
   one anonymous id before they are known) or bought in the same order as the cart's items, in
   the ``window_days`` before ``now``. Strength = Σ over the cart's items of
   ``CO_VIEW_WEIGHT`` · people who viewed both + ``CO_BUY_WEIGHT`` · orders holding both, each
   item contributing its ``NEIGHBOURS`` strongest partners;
1. **category best-sellers** — the best-selling products (units, same window) of the categories
   of the cart's items;
2. **best-sellers** — of the whole catalogue (products without sales last, by product id), so
   that ``k`` is always reached when the catalogue has ``k`` products to offer.

Never offered: products in the cart, products the customer already bought (any order up to
``now``), products out of stock (``stock <= 0``; no stock figure counts as available). Ties go to
the smaller product id, so the answer is deterministic. The fallback tiers only look at the
first ``k + exclusions`` products of each ranking, which is enough to fill ``k`` and keeps the
work linear in the number of carts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from personify.offers._sql import UNNEST, Sql, catalogue_sql, pick_sql
from personify.offers._sql import product as product_dict
from personify.offers._state import active
from personify.offers.carts import cart_lines_sql
from personify.warehouse import Warehouse
from personify.warehouse.sqltext import interval_days, prop

CO_VIEW_WEIGHT = 1.0
"""Strength of one person having viewed both products."""
CO_BUY_WEIGHT = 3.0
"""Strength of one order holding both products (buying says more than looking)."""
NEIGHBOURS = 20
"""Each product's strongest co-viewed or co-bought products kept (at least ``2 k``): an
item-to-item list, as recommenders keep them, so a cart's candidates stay few however dense the
co-occurrences of a small catalogue are."""
VIEWED = "Product Viewed"


def co_sql(now: datetime, window_days: int, neighbours: int, sources: str | None) -> Sql:
    """CTEs (without ``WITH``) ending in ``co(src, dst, strength, pos)``: for each product of
    the CTE ``sources`` (a ``product_id`` column; ``None``: every product), its ``neighbours``
    strongest co-viewed or co-bought partners in the ``window_days`` before ``now``, ranked
    (``pos``, from 1)."""
    window = interval_days(window_days)
    in_window = "<= CAST(? AS TIMESTAMPTZ) AND {t} > CAST(? AS TIMESTAMPTZ) - " + window
    if sources is None:
        viewers = "viewers AS (SELECT DISTINCT who, product_id AS src FROM views), "
        buyers = "buyers AS (SELECT DISTINCT order_id, product_id AS src FROM baskets), "
    else:
        viewers = (
            "viewers AS (SELECT DISTINCT s.who, s.product_id AS src FROM views s "
            f"JOIN {sources} c ON c.product_id = s.product_id), "
        )
        buyers = (
            "buyers AS (SELECT DISTINCT s.order_id, s.product_id AS src FROM baskets s "
            f"JOIN {sources} c ON c.product_id = s.product_id), "
        )
    sql = (
        "views AS (SELECT DISTINCT coalesce('c:' || e.customer_id, 'a:' || e.anonymous_id) "
        f"AS who, {prop('product_id')} AS product_id FROM events e WHERE e.type = 'track' "
        f"AND e.event = '{VIEWED}' AND e.timestamp " + in_window.format(t="e.timestamp") + " "
        f"AND {prop('product_id')} IS NOT NULL "
        "AND (e.customer_id IS NOT NULL OR e.anonymous_id IS NOT NULL)), "
        + viewers
        + "co_view AS (SELECT s.src, v.product_id AS dst, count(*) AS n "
        "FROM viewers s JOIN views v ON v.who = s.who AND v.product_id <> s.src "
        "GROUP BY s.src, v.product_id), "
        "baskets AS (SELECT DISTINCT i.order_id, i.product_id FROM order_items i "
        "JOIN orders o ON o.order_id = i.order_id WHERE o.created_at "
        + in_window.format(t="o.created_at")
        + "), "
        + buyers
        + "co_buy AS (SELECT s.src, b.product_id AS dst, count(*) AS n "
        "FROM buyers s JOIN baskets b ON b.order_id = s.order_id AND b.product_id <> s.src "
        "GROUP BY s.src, b.product_id), "
        "co AS (SELECT src, dst, strength, pos FROM (SELECT src, dst, sum(w) AS strength, "
        "row_number() OVER (PARTITION BY src ORDER BY sum(w) DESC, dst) AS pos FROM ("
        f"SELECT src, dst, n * {CO_VIEW_WEIGHT!r} AS w FROM co_view UNION ALL "
        f"SELECT src, dst, n * {CO_BUY_WEIGHT!r} AS w FROM co_buy) x GROUP BY src, dst) y "
        "WHERE pos <= ?)"
    )
    return sql, [now, now, now, now, neighbours]


def recommend_for_carts(
    wh: Warehouse,
    carts: Mapping[str, str | None],
    *,
    now: datetime,
    k: int = 4,
    window_days: int = 90,
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``k`` products for each cart (``cart_id → customer_id``), best first.

    Every cart is a key of the result. Each product is ``{product_id, name, url, image_url,
    price, category}``. One statement for all the carts (cheaper inside a
    :func:`~personify.offers.snapshot` taken at the same ``now``)."""
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in carts}
    if not out or k <= 0:
        return out
    neighbours = max(NEIGHBOURS, 2 * k)
    lines, lines_params = cart_lines_sql(wh, "wanted", now)
    held = active(wh, now=now, window_days=window_days, lookback_days=None, neighbours=neighbours)
    if held is not None:
        co: Sql = (f"co AS (SELECT src, dst, strength FROM {held.co} WHERE pos <= ?)", [neighbours])
    else:
        co = co_sql(now, window_days, neighbours, "cart_products")
    sql = (
        f"WITH wanted AS (SELECT {UNNEST} AS cart_id, {UNNEST} AS customer_id), "
        + lines
        + ", "
        + catalogue_sql(interval_days(window_days))
        + ", in_cart AS (SELECT DISTINCT cart_id, product_id FROM cart_lines), "
        "excluded AS (SELECT cart_id AS owner, product_id FROM in_cart UNION "
        "SELECT w.cart_id, i.product_id FROM wanted w JOIN orders o "
        "ON o.customer_id = w.customer_id JOIN order_items i ON i.order_id = o.order_id "
        "WHERE o.created_at <= CAST(? AS TIMESTAMPTZ)), "
        "exclusions AS (SELECT w.cart_id, count(x.product_id) AS n FROM wanted w "
        "LEFT JOIN excluded x ON x.owner = w.cart_id GROUP BY w.cart_id), "
        "cart_products AS (SELECT DISTINCT product_id FROM in_cart), "
        + co[0]
        + ", cart_categories AS (SELECT DISTINCT l.cart_id, p.category FROM cart_lines l "
        "JOIN products p ON p.product_id = l.product_id WHERE p.category IS NOT NULL), "
        "candidates AS ("
        "SELECT c.cart_id AS owner, co.dst AS product_id, 0 AS tier, -sum(co.strength) AS r1, "
        "0 AS r2 FROM in_cart c JOIN co ON co.src = c.product_id GROUP BY c.cart_id, co.dst "
        "UNION ALL SELECT c.cart_id, r.product_id, 1, r.in_category, 0 FROM cart_categories c "
        "JOIN exclusions x ON x.cart_id = c.cart_id JOIN ranked r ON r.category = c.category "
        "AND r.in_category <= ? + x.n "
        "UNION ALL SELECT x.cart_id, r.product_id, 2, r.overall, 0 FROM exclusions x "
        "JOIN ranked r ON r.overall <= ? + x.n) " + pick_sql()
    )
    ids = list(out)
    params: list[Any] = [ids, [carts[c] for c in ids], *lines_params]
    params += [now, now, now]  # catalogue: listed, sales
    params += [now]  # excluded: bought
    params += co[1]
    params += [k, k, k]
    for row in wh.fetch(sql, params):
        out[row[0]].append(product_dict(row, 1))
    return out
