"""The shop's product catalogue (a Shopify-style product export).

Products are laid out category by category, most popular first within a category, so a
popularity-skewed pick is ``start[category] + floor(u² · size[category])``. The first products of
each category are old; a few per category are new arrivals (listed in the last 14 days), and some
are out of stock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import _text as tx
from personify.demo._vocab import ADJECTIVES, CATEGORIES, COLOURS, CURRENCY, SHOP_URL

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Catalog:
    """The products as a table (wire form) plus the arrays the behaviour generator needs."""

    table: pa.Table
    """``id, sku, title, product_type, price, currency, inventory_quantity, url, image_url,
    created_at, updated_at`` — sorted by ``updated_at``."""
    category: np.ndarray
    price: np.ndarray
    created_ms: np.ndarray
    cat_start: np.ndarray
    """Index of each category's first (most popular, oldest) product."""
    cat_size: np.ndarray
    ids: pa.Array
    names: pa.Array
    skus: pa.Array
    urls: pa.Array
    paths: pa.Array

    @property
    def size(self) -> int:
        return len(self.price)

    def pick(self, rng: np.random.Generator, category: np.ndarray, at_ms: np.ndarray) -> np.ndarray:
        """A product of each ``category``, skewed to popular ones, listed before ``at_ms``."""
        u = rng.random(len(category))
        product = self.cat_start[category] + (u * u * self.cat_size[category]).astype(np.int64)
        too_new = self.created_ms[product] > at_ms
        picked: np.ndarray = np.where(too_new, self.cat_start[category], product)
        return picked


def catalog_size(customers: int) -> int:
    """Products per category: grows with the square root of the customer count."""
    return max(12, int(12 + 0.2 * np.sqrt(customers)))


def build_catalog(rng: np.random.Generator, customers: int, now_ms: int) -> Catalog:
    """The catalogue for a world of ``customers`` people at ``now_ms``."""
    per = catalog_size(customers)
    n = per * len(CATEGORIES)
    category = np.repeat(np.arange(len(CATEGORIES)), per)
    rank = np.tile(np.arange(per), len(CATEGORIES))
    noun = rng.integers(0, 5, n)
    names = tx.join(
        tx.pick(ADJECTIVES, rng.integers(0, len(ADJECTIVES), n)),
        " ",
        pa.array([c.nouns[k] for c in CATEGORIES for k in range(5)]).take(
            pa.array(category * 5 + noun)
        ),
        " (",
        tx.pick(COLOURS, rng.integers(0, len(COLOURS), n)),
        ")",
    )
    median = np.array([c.median_price for c in CATEGORIES])[category]
    raw = np.exp(rng.normal(np.log(median), 0.45))
    price = np.where(rng.random(n) < 0.7, np.floor(raw) + 0.99, np.round(raw))
    price = np.maximum(price, 4.99)
    stock = np.where(rng.random(n) < 0.08, 0, rng.poisson(40, n) + 1)
    created = now_ms - (rng.uniform(120, 1100, n) * DAY_MS).astype(np.int64)
    new = (rank >= 3) & ((rank >= per - 2) | (rng.random(n) < 0.05))
    created = np.where(new, now_ms - (rng.uniform(0.1, 14, n) * DAY_MS).astype(np.int64), created)
    updated = np.maximum(created, now_ms - (rng.uniform(0, 90, n) * DAY_MS).astype(np.int64))
    number = np.arange(1, n + 1)
    ids = tx.join("prod_", tx.ints(number + 10_000))
    slug_cat = tx.pick([c.slug[:3].upper() for c in CATEGORIES], category)
    skus = tx.join("SKU-", slug_cat, "-", tx.ints(number + 100_000))
    slugs = pc.replace_substring_regex(pc.utf8_lower(names), r"[^a-z0-9]+", "-")
    paths = tx.join("/products/", pc.utf8_trim(slugs, "-"), "-", tx.ints(number + 10_000))
    urls = tx.join(SHOP_URL, paths)
    table = pa.table(
        {
            "id": ids,
            "sku": skus,
            "title": names,
            "product_type": tx.pick([c.name for c in CATEGORIES], category),
            "price": tx.money(price),
            "currency": pa.array([CURRENCY] * n),
            "inventory_quantity": pa.array(stock),
            "url": urls,
            "image_url": tx.join("https://cdn.shop.example/products/", ids, ".jpg"),
            "created_at": tx.iso(created, millis=False),
            "updated_at": tx.iso(updated, millis=False),
        }
    )
    order = tx.stable_argsort(updated)
    return Catalog(
        table=table.take(pa.array(order)),
        category=category,
        price=price,
        created_ms=created,
        cat_start=np.arange(len(CATEGORIES)) * per,
        cat_size=np.full(len(CATEGORIES), per),
        ids=ids,
        names=names,
        skus=skus,
        urls=urls,
        paths=paths,
    )
