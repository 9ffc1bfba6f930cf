"""Test data for the audiences suites: customers and orders loaded straight through Arrow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from personify.audiences.interpreter import normalize_profile
from personify.audiences.realtime import evaluate_profile
from personify.audiences.rules import Rule
from personify.warehouse import Warehouse, table

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 1, 1, tzinfo=UTC)

_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMPTZ": TS,
    "DATE": pa.date32(),
}


def arrow_rows(table_name: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """``rows`` (dicts of column → value) as an Arrow table typed like ``table_name``."""
    t = table(table_name)
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {}
    for name in names:
        column = t.column(name)
        values = [r.get(name) for r in rows]
        columns[name] = pa.array(values, _TYPES.get(column.type, pa.string()))
    return pa.table(columns)


def load_customers(wh: Warehouse, rows: Sequence[dict[str, Any]]) -> None:
    """Insert customers; ``updated_at`` defaults to T0."""
    full = [{"updated_at": T0, **r} for r in rows]
    wh.load(table("customers"), arrow_rows("customers", full))


def load_orders(wh: Warehouse, rows: Sequence[dict[str, Any]]) -> None:
    """Insert orders; ``source`` defaults to ``test``."""
    full = [{"source": "test", **r} for r in rows]
    wh.load(table("orders"), arrow_rows("orders", full))


def load_consents(wh: Warehouse, rows: Sequence[tuple[str, str, str]]) -> None:
    """Insert ``(customer_id, purpose, status)`` consents on the email channel."""
    data = [
        {
            "customer_id": c,
            "purpose": p,
            "channel": "email",
            "status": s,
            "source": "test",
            "updated_at": T0,
        }
        for c, p, s in rows
    ]
    wh.load(table("consents"), arrow_rows("consents", data))


def batch_tags(wh: Warehouse) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    rows = wh.fetch("SELECT customer_id, tag, rule, variables FROM customer_tags")
    out = {}
    for cid, tag, rule, variables in rows:
        parsed = json.loads(variables) if isinstance(variables, str) else variables
        out[(cid, tag)] = (rule, parsed or {})
    return out


def realtime_tags(
    wh: Warehouse, rules: list[Rule], now: datetime
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    out = {}
    for row in wh.fetch_arrow("SELECT * FROM customers").to_pylist():
        profile = normalize_profile(row)
        for a in evaluate_profile(rules, profile, now):
            out[(profile["customer_id"], a.tag)] = (a.rule, a.variables)
    return out
