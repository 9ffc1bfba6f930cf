"""The audit log: an append-only record of privacy-relevant actions, without personal data.

Each row says what was done (``profile_read``, ``export``, ``erase``, ``consent``), by whom
(``cli``, ``api``, ``tracking`` …), to whom — as a keyed hash of the customer id, so the log
itself discloses nobody — and a small JSON ``detail`` of counts and settings. ``personify audit``
lists it; nothing in Personify updates or deletes its rows (an erasure leaves its own entry).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from personify.warehouse.base import Warehouse

ACTIONS: tuple[str, ...] = ("profile_read", "export", "erase", "consent")


def customer_hash(key: bytes | None, customer_id: str) -> str:
    """Keyed hash (hex, 32 chars) of a customer id; an unkeyed project gets a plain SHA-256."""
    data = f"customer_id\0{customer_id}".encode()
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(data).hexdigest()[:32]


def log_action(
    wh: Warehouse,
    *,
    action: str,
    actor: str,
    customer_id: str | None,
    key: bytes | None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry (``detail`` must hold no personal data: counts, purposes, statuses)."""
    wh.execute(
        "INSERT INTO audit_log (id, occurred_at, action, actor, subject_hash, detail) "
        "VALUES (?, ?, ?, ?, ?, CAST(? AS JSON))",
        [
            uuid.uuid4().hex,
            at or datetime.now(UTC),  # wall-clock time, not --now: when it really happened
            action,
            actor,
            None if customer_id is None else customer_hash(key, customer_id),
            msgspec.json.encode(dict(detail or {})).decode(),
        ],
    )


def read_log(wh: Warehouse, *, action: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest entries first (optionally of one action)."""
    where, params = ("WHERE action = ?", [action]) if action else ("", [])
    table = wh.fetch_arrow(
        "SELECT occurred_at, action, actor, subject_hash, CAST(detail AS VARCHAR) AS detail "
        f"FROM audit_log {where} ORDER BY occurred_at DESC, id LIMIT {int(limit)}",
        params,
    )
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["detail"] = msgspec.json.decode(row["detail"]) if row["detail"] else {}
    return rows
