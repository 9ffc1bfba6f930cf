"""The render context: the customer's profile, read fresh, plus the caller's variables."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from personify.config import Project
from personify.errors import NotFound, PersonifyError
from personify.privacy.fields import decrypt_row, lookup
from personify.profiles import resolve_customer
from personify.realtime.cache import cache_of
from personify.warehouse.base import UNNEST, Warehouse

_JSON_FIELDS = ("preferred_categories", "traits")
_BY_IDS = f"SELECT * FROM customers WHERE customer_id IN (SELECT {UNNEST})"


def _customer(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON_FIELDS:
        value = out.get(name)
        if isinstance(value, str):
            try:
                out[name] = json.loads(value)
            except ValueError:
                pass
    if out.get("preferred_categories") is None:
        out["preferred_categories"] = []
    if out.get("traits") is None:
        out["traits"] = {}
    return out


def read_customers(wh: Warehouse, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``customers`` rows of many customers at once (for a journey's batch), by customer id."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    cache = cache_of(wh)  # a serving process reads through its profile cache
    if cache is None:
        found = _read_customers(wh, ids)
    else:
        found = cache.get_many(ids, partial(_read_customers, wh))
    # encrypted columns (privacy.encrypted_fields) in plain text only here, at use: the cache
    # keeps them sealed; a value that does not decrypt stays sealed and fails that one send
    return {c: decrypt_row(wh, row, strict=False) for c, row in found.items()}


def _read_customers(wh: Warehouse, ids: list[str]) -> dict[str, dict[str, Any]]:
    table = wh.fetch_arrow(_BY_IDS, [ids])  # one statement text whatever the batch size
    return {str(r["customer_id"]): _customer(r) for r in table.to_pylist()}


def read_customer(wh: Warehouse, who: str, project: Project) -> dict[str, Any]:
    """One customer's ``customers`` row by customer id, email or identifier. Raises NotFound."""
    text = who.strip()
    row = read_customers(wh, [text])
    if row:
        return row[text]
    try:
        customer_id: str | None = resolve_customer(wh, text, project)
    except PersonifyError:
        customer_id = None
    if customer_id is not None and (found := read_customers(wh, [customer_id])):
        return found[customer_id]
    rows = wh.fetch(
        "SELECT customer_id FROM customers WHERE lower(email) = ? ORDER BY customer_id LIMIT 1",
        [text.lower()],
    )
    indexed = lookup(wh, "email", text)  # an encrypted email column: its blind index
    first = str(rows[0][0]) if rows else (indexed[0] if indexed else None)
    if first is not None and (found := read_customers(wh, [first])):
        return found[first]
    raise NotFound(f"no customer {who!r}", hint="pass a customer id or email; run `personify run`")


def build_context(
    customer: Mapping[str, Any], variables: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The names a template sees: ``customer`` (the profile) and the caller's variables."""
    context: dict[str, Any] = {"customer": dict(customer)}
    context.update(variables or {})
    return context
