"""Identity rules from the project file, loaded into small temporary lookup tables.

SQL joins these instead of carrying configured values in its text:

* ``_id_kinds (kind, rank, anonymous, max_count)`` — every configured kind; others rank as ``*``;
* ``_id_blocked (kind, value)`` — blocked values, normalized (``kind = '*'``: lower-cased);
* ``_id_source_kinds (source, kind)`` — the id kind of each named source.

:func:`fingerprint` summarizes the rules that shape the graph: when it changes, the graph is
rebuilt from scratch.
"""

from __future__ import annotations

import hashlib

import msgspec
import pyarrow as pa

from personify.config import IdentityConfig
from personify.identity._sql import scratch, temp_table
from personify.identity.normalize import WS, kind_rank, normalize
from personify.warehouse.base import Warehouse

KINDS = scratch("_id_kinds", kind="VARCHAR", rank="BIGINT", anonymous="BOOLEAN", max_count="BIGINT")
BLOCKED = scratch("_id_blocked", kind="VARCHAR", value="VARCHAR")
SOURCE_KINDS = scratch("_id_source_kinds", source="VARCHAR", kind="VARCHAR")

STAR_RANK_SQL = "(SELECT rank FROM _id_kinds WHERE kind = '*')"
"""The rank of kinds the configuration does not name."""


def fingerprint(config: IdentityConfig) -> str:
    """A digest of the rules that decide the graph (all but ``max_rounds``)."""
    data = msgspec.json.encode(
        [
            config.priority,
            sorted(config.limits.items()),
            sorted((k, sorted(v)) for k, v in config.blocked.items()),
            config.anonymous_kinds,
            sorted(config.source_kinds.items()),
            config.email,
            config.phone_region,
        ]
    )
    return hashlib.sha256(data).hexdigest()[:16]


def load_rules(wh: Warehouse, config: IdentityConfig) -> None:
    """Create the lookup tables for ``config`` (temporary: this connection only)."""
    kinds = {k for k in config.priority} | set(config.limits) | set(config.anonymous_kinds)
    kinds |= {"*", "email", "phone", "user_id", "anonymous_id"}
    rows = sorted(kinds)
    temp_table(
        wh,
        KINDS,
        pa.table(
            {
                "kind": rows,
                "rank": pa.array([kind_rank(k, config) for k in rows], pa.int64()),
                "anonymous": [k in config.anonymous_kinds for k in rows],
                "max_count": pa.array([config.limits.get(k) for k in rows], pa.int64()),
            }
        ),
    )
    blocked: list[tuple[str, str]] = []
    for kind, values in config.blocked.items():
        for raw in values:
            value = raw.strip(WS).lower() if kind == "*" else normalize(kind, raw, config)
            if value:
                blocked.append((kind, value))
    blocked = sorted(set(blocked))
    temp_table(
        wh,
        BLOCKED,
        pa.table(
            {"kind": [b[0] for b in blocked], "value": [b[1] for b in blocked]},
            schema=pa.schema([("kind", pa.string()), ("value", pa.string())]),
        ),
    )
    pairs = sorted(config.source_kinds.items())
    temp_table(
        wh,
        SOURCE_KINDS,
        pa.table(
            {"source": [p[0] for p in pairs], "kind": [p[1] for p in pairs]},
            schema=pa.schema([("source", pa.string()), ("kind", pa.string())]),
        ),
    )


def source_kind_sql(source_expr: str) -> str:
    """SQL: the id kind of the source ``source_expr`` (``<source>_id`` unless configured)."""
    return (
        f"coalesce((SELECT sk.kind FROM _id_source_kinds sk WHERE sk.source = {source_expr}), "
        f"{source_expr} || '_id')"
    )


def rank_sql(kind_expr: str) -> str:
    """SQL: the rank of ``kind_expr`` (0 = strongest)."""
    return (
        f"coalesce((SELECT ik.rank FROM _id_kinds ik WHERE ik.kind = {kind_expr}), {STAR_RANK_SQL})"
    )


def blocked_sql(kind_expr: str, value_expr: str) -> str:
    """SQL: whether the normalized ``value_expr`` of ``kind_expr`` is blocked."""
    return (
        f"EXISTS (SELECT 1 FROM _id_blocked ib WHERE (ib.kind = {kind_expr} "
        f"AND ib.value = {value_expr}) OR (ib.kind = '*' AND ib.value = lower({value_expr})))"
    )
