"""Small persistent state of identity and profiles: watermarks and the rules' fingerprint."""

from __future__ import annotations

from datetime import datetime

from personify import clock
from personify.warehouse.base import Warehouse


def get(wh: Warehouse, key: str) -> str | None:
    """The stored value of ``key``, if any."""
    value = wh.scalar("SELECT value FROM identity_state WHERE key = ?", [key])
    return None if value is None else str(value)


def put(wh: Warehouse, key: str, value: str) -> None:
    """Store ``value`` under ``key``."""
    wh.execute(
        "INSERT INTO identity_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [key, value, clock.now()],
    )


def get_instant(wh: Warehouse, key: str) -> datetime | None:
    """A stored instant (ISO 8601), if any."""
    value = get(wh, key)
    return clock.parse_instant(value) if value else None


def latest(wh: Warehouse, table: str, column: str = "received_at") -> datetime | None:
    """The newest ``column`` value of ``table`` (the watermark the pass reads up to)."""
    value = wh.scalar(f"SELECT max({column}) FROM {table}")
    return value if isinstance(value, datetime) else None
