"""Small SQL helpers shared by the offers modules (authored in DuckDB's dialect, ``?`` params).

The helpers any stage may use (``prop``, ``numeric``, ``interval_days``) live in
:mod:`personify.warehouse.sqltext`.

Inputs travel as array parameters unnested in the warehouse — ``unnest(CAST(? AS VARCHAR[]))``
runs on DuckDB and PostgreSQL alike — so one statement serves any number of carts or customers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personify.warehouse.base import UNNEST as UNNEST

Sql = tuple[str, list[Any]]
"""SQL text and its parameters, in placeholder order."""

PRODUCT_FIELDS = ("product_id", "name", "url", "image_url", "price", "category")
"""The fields of a product as offers return it."""

IN_STOCK = "(p.stock IS NULL OR p.stock > 0)"
"""A product is offered unless the catalogue says none are left (no stock figure: offered) —
and once it is listed (``created_at`` at or before ``now``)."""


def product(row: Sequence[Any], start: int = 0) -> dict[str, Any]:
    """A product dict from ``PRODUCT_FIELDS`` columns starting at ``start``."""
    out = dict(zip(PRODUCT_FIELDS, row[start : start + len(PRODUCT_FIELDS)], strict=True))
    if out["price"] is not None:
        out["price"] = float(out["price"])
    return out


def catalogue_sql(window: str) -> str:
    """CTEs (without ``WITH``): ``offerable`` (products listed by ``now`` and in stock, with
    their fields) and ``ranked`` (each with ``units`` sold in the window and its rank ``overall``
    and ``in_category`` by units, then product id). Three parameters: ``now``, ``now``, ``now``;
    ``window`` is an :func:`interval_days` literal."""
    fields = ", ".join(f"p.{f}" for f in PRODUCT_FIELDS)
    return (
        f"offerable AS (SELECT {fields}, p.created_at, p.updated_at FROM products p "
        f"WHERE {IN_STOCK} AND (p.created_at IS NULL OR p.created_at <= CAST(? AS TIMESTAMPTZ))), "
        "sales AS (SELECT i.product_id, sum(i.quantity) AS units FROM order_items i "
        "JOIN orders o ON o.order_id = i.order_id WHERE o.created_at <= CAST(? AS TIMESTAMPTZ) "
        f"AND o.created_at > CAST(? AS TIMESTAMPTZ) - {window} GROUP BY i.product_id), "
        "ranked AS (SELECT p.product_id, p.category, coalesce(s.units, 0) AS units, "
        "row_number() OVER (ORDER BY coalesce(s.units, 0) DESC, p.product_id) AS overall, "
        "row_number() OVER (PARTITION BY p.category ORDER BY coalesce(s.units, 0) DESC, "
        "p.product_id) AS in_category FROM offerable p "
        "LEFT JOIN sales s ON s.product_id = p.product_id)"
    )


def pick_sql() -> str:
    """The final SELECT over two CTEs — ``candidates(owner, product_id, tier, r1, r2)`` and
    ``excluded(owner, product_id)`` — keeping, per owner (a cart or a customer), each product's
    best row (lowest ``tier, r1, r2``), dropping excluded and non-offerable products, and
    returning the first ``?`` by ``tier, r1, r2, product_id`` as ``owner, PRODUCT_FIELDS``
    ordered by owner then rank. One parameter: k.

    ``(tier, r1, r2)`` is folded into one number so that a hash aggregate, not a sort, keeps
    each product's best row: it needs ``0 <= r2 < 10,000``, ``|r1| < 10¹⁰`` and, where ``r2``
    varies, a whole ``r1``."""
    fields = ", ".join(f"p.{f}" for f in PRODUCT_FIELDS)
    key = "CAST(c.tier AS DOUBLE) * 1e15 + CAST(c.r1 AS DOUBLE) * 1e4 + CAST(c.r2 AS DOUBLE)"
    return (
        f"SELECT b.owner, {fields} FROM (SELECT d.owner, d.product_id, row_number() OVER "
        "(PARTITION BY d.owner ORDER BY d.rank_key, d.product_id) AS pos FROM ("
        f"SELECT c.owner, c.product_id, min({key}) AS rank_key FROM candidates c "
        "JOIN offerable o ON o.product_id = c.product_id WHERE NOT EXISTS (SELECT 1 "
        "FROM excluded x WHERE x.owner = c.owner AND x.product_id = c.product_id) "
        "GROUP BY c.owner, c.product_id) d) b "
        "JOIN offerable p ON p.product_id = b.product_id WHERE b.pos <= ? "
        "ORDER BY b.owner, b.pos"
    )
