"""A sprinkle of invalid records, so quarantine has something to show.

Each bad record is a *copy* of a real one with one thing broken, appended at the end of its table
(the valid world stays whole): a malformed email, a missing required id, a negative quantity, an
unparseable timestamp. About 0.2 % of a table's rows per kind of flaw. Malformed JSON lines are
added when the JSON Lines files are written (:mod:`personify.demo.files`); flawed events are made
by :mod:`personify.demo.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import _text as tx

RATE: Final = 0.002
BAD_TIMESTAMPS: Final = ("31/02/2024 25:61", "yesterday", "2024-13-45T99:00:00Z", "n/a")
Flaw = Callable[[pa.Table, int], pa.Table]
"""Breaks a table of copied rows; the int numbers the copies (for fresh ids)."""


def sprinkle(rng: np.random.Generator, name: str, table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` with flawed copies, for the flaws known for ``name``, appended at its end (bad
    records often arrive late); and how many were added."""
    flaws = FLAWS.get(name, ())
    copies = []
    for number, flaw in enumerate(flaws):
        k = min(table.num_rows, max(1, round(table.num_rows * RATE)))
        rows = np.sort(rng.choice(table.num_rows, k, replace=False))
        copies.append(flaw(table.take(pa.array(rows)), number * 1_000_000))
    if not copies:
        return table, 0
    added = sum(c.num_rows for c in copies)
    return pa.concat_tables([table, *copies]).combine_chunks(), added


def _set(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values)


def _set_field(table: pa.Table, column: str, field: str, values: pa.Array) -> pa.Table:
    struct = table.column(column).combine_chunks()
    children = {f.name: struct.field(f.name) for f in struct.type}
    children[field] = values
    rebuilt = pa.StructArray.from_arrays(list(children.values()), names=list(children))
    return _set(table, column, rebuilt)


def _fresh_ids(table: pa.Table, column: str, base: int, offset: int) -> pa.Table:
    ids = np.arange(table.num_rows) + base + offset
    values = pa.array(ids) if pa.types.is_integer(table.schema.field(column).type) else tx.ints(ids)
    return _set(table, column, values)


def malformed(emails: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Addresses broken the usual ways: no ``@``, a doubled ``@``, a space inside, no domain."""
    n = len(emails)
    variant = np.arange(n) % 4
    no_at = pc.replace_substring(emails, "@", "", max_replacements=1)
    double = pc.replace_substring(emails, "@", "@@", max_replacements=1)
    spaced = pc.replace_substring(emails, "@", " @ ", max_replacements=1)
    no_domain = pc.replace_substring_regex(emails, "@.*$", "@")
    out = tx.where(variant == 0, no_at, double)
    out = tx.where(variant == 2, spaced, out)
    return tx.where(variant == 3, no_domain, out)


def _bad_time(table: pa.Table, column: str) -> pa.Table:
    index = np.arange(table.num_rows) % len(BAD_TIMESTAMPS)
    return _set(table, column, tx.pick(BAD_TIMESTAMPS, index))


def _null(table: pa.Table, column: str) -> pa.Table:
    return _set(table, column, pa.nulls(table.num_rows, table.schema.field(column).type))


FLAWS: Final[dict[str, tuple[Flaw, ...]]] = {
    "products": (lambda t, _: _null(t, "id"),),
    "shop_customers": (
        lambda t, _: _null(t, "id"),
        lambda t, o: _set(
            _fresh_ids(t, "id", 8_000_000_000_000, o), "email", malformed(t["email"])
        ),
        lambda t, o: _bad_time(_fresh_ids(t, "id", 8_000_000_000_000, o), "created_at"),
    ),
    "crm_contacts": (
        lambda t, _: _null(t, "id"),
        lambda t, o: _set_field(
            _fresh_ids(t, "id", 900_000_000, o),
            "properties",
            "email",
            malformed(t["properties"].combine_chunks().field("email")),
        ),
        lambda t, o: _bad_time(_fresh_ids(t, "id", 900_000_000, o), "updatedAt"),
    ),
    "consents": (
        lambda t, _: _null(t, "customer_id"),
        lambda t, _: _bad_time(t, "updated_at"),
    ),
    "orders": (
        lambda t, _: _null(t, "id"),
        lambda t, o: _null(_fresh_ids(t, "id", 9_900_000_000_000, o), "created_at"),
    ),
    "order_items": (
        lambda t, _: _set(
            _set(t, "quantity", pc.negate(t["quantity"])),
            "line_number",
            pc.add(t["line_number"], 100),
        ),
    ),
    "tickets": (
        lambda t, o: _bad_time(_fresh_ids(t, "id", 9_000_000, o), "created_at"),
        lambda t, o: _set_field(
            _fresh_ids(t, "id", 9_000_000, o),
            "requester",
            "email",
            malformed(t["requester"].combine_chunks().field("email")),
        ),
    ),
}
"""The flaws each table gets."""
