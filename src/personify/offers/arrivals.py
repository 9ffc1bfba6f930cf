"""New arrivals for customers: recently listed products from their preferred categories.

A product is new when it was listed (``products.created_at``, else ``updated_at``) within
``new_within_days`` before ``now``. Each customer's ``preferred_categories`` (most preferred
first) are interleaved — the newest of the first category, the newest of the second, …, then the
second newest of each — so one busy category does not crowd out the others. When that leaves
fewer than ``k``, best-sellers (units over ``window_days``) of the preferred categories follow,
then best-sellers of the whole catalogue. Never offered: products the customer already bought,
products out of stock. Ties go to the smaller product id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from personify.offers._sql import UNNEST, catalogue_sql, pick_sql
from personify.offers._sql import product as product_dict
from personify.warehouse import Warehouse
from personify.warehouse.sqltext import interval_days


def new_arrivals(
    wh: Warehouse,
    customer_ids: Sequence[str],
    *,
    now: datetime,
    k: int = 4,
    new_within_days: int = 30,
    window_days: int = 90,
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``k`` products for each customer, best first (every customer is a key of the
    result). Each product is ``{product_id, name, url, image_url, price, category}``. Two
    statements for all the customers: their preferred categories, then the picks."""
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in customer_ids}
    if not out or k <= 0:
        return out
    ids = list(out)
    owners, categories, positions = preferences(wh, ids)
    listed = "coalesce(p.created_at, p.updated_at)"
    sql = (
        f"WITH wanted AS (SELECT DISTINCT {UNNEST} AS customer_id), "
        f"prefs AS (SELECT {UNNEST} AS customer_id, {UNNEST} AS category, "
        "unnest(CAST(? AS BIGINT[])) AS pos), "
        + catalogue_sql(interval_days(window_days))
        + ", excluded AS (SELECT DISTINCT o.customer_id AS owner, i.product_id FROM orders o "
        "JOIN order_items i ON i.order_id = o.order_id "
        "WHERE o.created_at <= CAST(? AS TIMESTAMPTZ) "
        "AND o.customer_id IN (SELECT customer_id FROM wanted)), "
        "exclusions AS (SELECT w.customer_id, count(x.product_id) AS n FROM wanted w "
        "LEFT JOIN excluded x ON x.owner = w.customer_id GROUP BY w.customer_id), "
        f"fresh AS (SELECT p.product_id, p.category, {listed} AS listed FROM offerable p "
        f"WHERE {listed} <= CAST(? AS TIMESTAMPTZ) "
        f"AND {listed} > CAST(? AS TIMESTAMPTZ) - {interval_days(new_within_days)}), "
        "candidates AS (SELECT owner, product_id, 0 AS tier, r1, r2 FROM ("
        "SELECT f.customer_id AS owner, f.product_id, f.pos AS r2, row_number() OVER "
        "(PARTITION BY f.customer_id, f.category ORDER BY f.listed DESC, f.product_id) AS r1 "
        "FROM (SELECT q.customer_id, q.pos, n.product_id, n.category, n.listed FROM prefs q "
        "JOIN fresh n ON n.category = q.category WHERE NOT EXISTS (SELECT 1 FROM excluded x "
        "WHERE x.owner = q.customer_id AND x.product_id = n.product_id)) f) a "
        "UNION ALL SELECT q.customer_id, r.product_id, 1, r.in_category, q.pos FROM prefs q "
        "JOIN exclusions x ON x.customer_id = q.customer_id JOIN ranked r "
        "ON r.category = q.category AND r.in_category <= ? + x.n "
        "UNION ALL SELECT x.customer_id, r.product_id, 2, r.overall, 0 FROM exclusions x "
        "JOIN ranked r ON r.overall <= ? + x.n) " + pick_sql()
    )
    params: list[Any] = [ids, owners, categories, positions]
    params += [now, now, now]  # catalogue: listed, sales
    params += [now]  # bought
    params += [now, now]  # fresh
    params += [k, k, k]
    for row in wh.fetch(sql, params):
        out[row[0]].append(product_dict(row, 1))
    return out


def preferences(wh: Warehouse, customer_ids: list[str]) -> tuple[list[str], list[str], list[int]]:
    """Each customer's ``preferred_categories`` as three parallel lists (customer, category,
    position from 0), for unnesting in the warehouse (JSON arrays unnest differently per engine,
    so they are read once, for every customer in one statement, and sent back as arrays)."""
    rows = wh.fetch(
        "SELECT customer_id, preferred_categories FROM customers "
        f"WHERE customer_id IN (SELECT {UNNEST}) AND preferred_categories IS NOT NULL",
        [customer_ids],
    )
    owners: list[str] = []
    categories: list[str] = []
    positions: list[int] = []
    for customer_id, raw in rows:
        value = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if not isinstance(value, list):
            continue
        seen: set[str] = set()
        for category in value:
            if isinstance(category, str) and category not in seen:
                seen.add(category)
                owners.append(customer_id)
                categories.append(category)
                positions.append(len(seen) - 1)
    return owners, categories, positions
