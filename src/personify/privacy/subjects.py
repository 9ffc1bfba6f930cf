"""Who a privacy request is about: the customer an id or email names, and every key their data
is stored under (customer ids merged into theirs, identifiers of every kind)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personify.config import Project
from personify.profiles.read import resolve_customer
from personify.warehouse.base import UNNEST, Warehouse


@dataclass(frozen=True)
class ConsentRow:
    """A row of ``consents`` that belongs to the customer (under whichever key)."""

    key: str
    purpose: str
    channel: str
    status: str
    source: str
    updated_at: datetime


def resolve(wh: Warehouse, project: Project, who: str) -> str:
    """The current customer id ``who`` (a customer id, email or ``kind:value``) names."""
    return resolve_customer(wh, who, project)


def customer_keys(wh: Warehouse, customer_id: str) -> list[str]:
    """The customer id and every id merged into it."""
    rows = wh.fetch("SELECT customer_id FROM customer_ids WHERE merged_into = ?", [customer_id])
    return [customer_id, *sorted(str(r[0]) for r in rows)]


def consent_rows(
    wh: Warehouse, customer_id: str, source_kinds: Mapping[str, str]
) -> list[ConsentRow]:
    """Every ``consents`` row of the customer: keyed by its id, an id merged into it, or a
    source's id it holds (resolved as :func:`~personify.privacy.consent.consented` does)."""
    pairs = sorted(source_kinds.items())
    params: list[Any] = [
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        customer_id,
        customer_id,
        customer_id,
    ]
    rows = wh.fetch(
        f"WITH sk AS (SELECT {UNNEST} AS source, {UNNEST} AS kind) "
        "SELECT k.customer_id, k.purpose, k.channel, k.status, k.source, k.updated_at "
        "FROM consents k LEFT JOIN customer_ids ci ON ci.customer_id = k.customer_id "
        "WHERE k.customer_id = ? OR ci.merged_into = ? "
        "UNION "
        "SELECT k.customer_id, k.purpose, k.channel, k.status, k.source, k.updated_at "
        "FROM consents k LEFT JOIN sk ON sk.source = k.source "
        "JOIN identities i ON i.kind = coalesce(sk.kind, k.source || '_id') "
        "AND i.value = k.customer_id WHERE i.customer_id = ? "
        "ORDER BY 2, 3, 6, 1",
        params,
    )
    return [ConsentRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5]) for r in rows]
