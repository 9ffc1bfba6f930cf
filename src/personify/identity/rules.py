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
from personify.identity.normalize import WS, blind_of, kind_rank, normalize
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import scratch, temp_table

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
    blind = blind_of(wh)
    if blind is not None:  # the graph holds blind emails/phones: block their hashes too
        for kind, value in list(blocked):
            for k in blind.kinds:
                normal = normalize(k, value, config) if kind in ("*", k) else None
                if normal:
                    blocked.append((k, blind.hash(k, normal)))
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


def source_kind_join(source_expr: str, alias: str = "sk") -> str:
    """SQL: ``LEFT JOIN`` of the configured id kind of the source ``source_expr``, as ``alias``
    (one row at most per source); :func:`source_kind` then gives the kind. A join, not a
    correlated subquery: engines run it once for all rows."""
    return f"LEFT JOIN {SOURCE_KINDS.name} {alias} ON {alias}.source = {source_expr}"


def source_kind(source_expr: str, alias: str = "sk") -> str:
    """SQL: the id kind of the source ``source_expr`` (``<source>_id`` unless configured), over
    the join :func:`source_kind_join` made with the same ``alias``."""
    return f"coalesce({alias}.kind, {source_expr} || '_id')"


def blocked_join(kind_expr: str, value_expr: str, alias: str = "ib") -> tuple[str, str]:
    """SQL: the ``LEFT JOIN`` clauses that find a blocked value, and the boolean over them.

    Two equi-joins (the kind's own list, then ``*`` on the lower-cased value) instead of one
    ``EXISTS (… OR …)``, which engines cannot turn into a hash join. ``_id_blocked`` holds each
    ``(kind, value)`` once, so neither join repeats rows."""
    joins = (
        f"LEFT JOIN {BLOCKED.name} {alias}1 ON {alias}1.kind = {kind_expr} "
        f"AND {alias}1.value = {value_expr} LEFT JOIN {BLOCKED.name} {alias}2 "
        f"ON {alias}2.kind = '*' AND {alias}2.value = lower({value_expr})"
    )
    return joins, f"({alias}1.kind IS NOT NULL OR {alias}2.kind IS NOT NULL)"
