"""Stable customer ids.

The rules, for every part (customer-sized piece) of a cluster that changed:

1. A part with no identifier but anonymous ones has no customer id (yet).
2. A part whose identifiers already carry customer ids keeps the **oldest** of them: the one
   whose founding identifier was seen first (``customer_ids.founded_at``), then the smaller id.
   The others are recorded as ``merged`` into it, and lookups by them follow ``merged_into``.
3. When a split leaves one id on several parts, the part holding the id's founder keeps it
   (else the part holding most identifiers with it); the others are treated as new.
4. A new customer's id is ``cus_`` + 20 hex digits of the MD5 of ``kind:value`` of its founder:
   the part's oldest non-anonymous identifier (first seen, then kind priority, kind, value).
   Rebuilding the same data from scratch therefore gives the same ids.
"""

from __future__ import annotations

from personify import clock
from personify.identity._sql import drop
from personify.identity.graph import TOUCHED_NODES
from personify.identity.guard import TOUCHED
from personify.identity.merges import follow_merges
from personify.identity.rules import STAR_RANK_SQL
from personify.warehouse.base import Warehouse

CHANGED = "_changed_customers"
"""``(customer_id)``: every id whose customer changed in this pass (kept, new or merged)."""

RESTITCH = "_restitch"
"""``(kind, value, customer_id)``: the anonymous and user ids, known before this pass, whose
customer it changed (to ``customer_id``) — the only identifiers whose events *outside* the pass
can need a new customer: an event is stitched by the pass that reads it, and an identifier new
in this pass has no event a pass has read yet (:func:`personify.identity.stitch.stitch`)."""

_SCRATCH = ("_tn", "_claims", "_owned", "_founders", "_part_ids", "_merged")


def _stage(wh: Warehouse) -> None:
    wh.execute(
        "CREATE TEMP TABLE _tn AS SELECT n.node_id, n.part, n.kind, n.value, n.first_seen, "
        "n.customer_id, coalesce(ik.anonymous, FALSE) AS anon, "
        f"coalesce(ik.rank, {STAR_RANK_SQL}) AS rank FROM identity_nodes n "
        f'JOIN {TOUCHED} t ON t."cluster" = n."cluster" '
        "LEFT JOIN _id_kinds ik ON ik.kind = n.kind WHERE NOT n.blocked"
    )
    wh.execute(
        "CREATE TEMP TABLE _claims AS SELECT tn.part, tn.customer_id, count(*) AS holders, "
        "max(CASE WHEN tn.node_id = ci.founder THEN 1 ELSE 0 END) AS has_founder, "
        "min(ci.founded_at) AS founded_at FROM _tn tn "
        "JOIN customer_ids ci ON ci.customer_id = tn.customer_id GROUP BY tn.part, tn.customer_id"
    )
    wh.execute(
        "CREATE TEMP TABLE _owned AS SELECT part, customer_id, founded_at FROM (SELECT c.*, "
        "row_number() OVER (PARTITION BY customer_id ORDER BY has_founder DESC, holders DESC, "
        "part) AS rn FROM _claims c) x WHERE rn = 1"
    )
    wh.execute(
        "CREATE TEMP TABLE _founders AS SELECT part, node_id, kind, value, first_seen FROM "
        "(SELECT tn.*, row_number() OVER (PARTITION BY part ORDER BY first_seen, rank, kind, "
        "value) AS rn FROM _tn tn WHERE NOT anon) x WHERE rn = 1"
    )
    wh.execute(
        "CREATE TEMP TABLE _part_ids AS SELECT f.part, coalesce(k.customer_id, 'cus_' || "
        "substr(md5(f.kind || ':' || f.value), 1, 20)) AS customer_id, "
        "k.customer_id IS NULL AS fresh, f.node_id AS founder, f.first_seen AS founded_at "
        "FROM _founders f LEFT JOIN (SELECT part, customer_id FROM (SELECT o.*, row_number() "
        "OVER (PARTITION BY part ORDER BY founded_at, customer_id) AS rn FROM _owned o) y "
        "WHERE rn = 1) k ON k.part = f.part"
    )
    wh.execute(
        "CREATE TEMP TABLE _merged AS SELECT c.customer_id, min(p.customer_id) AS merged_into "
        "FROM (SELECT DISTINCT customer_id FROM _claims) c "
        "LEFT JOIN _owned o ON o.customer_id = c.customer_id "
        "LEFT JOIN _part_ids p ON p.part = o.part "
        "WHERE c.customer_id NOT IN (SELECT customer_id FROM _part_ids) GROUP BY c.customer_id"
    )


def _apply(wh: Warehouse) -> None:
    now = clock.now()
    wh.execute(
        "UPDATE identity_nodes SET customer_id = p.customer_id FROM _part_ids p "
        "WHERE identity_nodes.part = p.part AND identity_nodes.customer_id IS DISTINCT FROM "
        "p.customer_id AND NOT identity_nodes.blocked"
    )
    wh.execute(
        "UPDATE identity_nodes SET customer_id = NULL WHERE customer_id IS NOT NULL AND "
        f'"cluster" IN (SELECT "cluster" FROM {TOUCHED}) AND (blocked OR '
        "part NOT IN (SELECT part FROM _part_ids))"
    )
    wh.execute(
        "INSERT INTO customer_ids (customer_id, founder, founded_at, status) "
        "SELECT customer_id, founder, founded_at, 'active' FROM _part_ids WHERE fresh "
        "ON CONFLICT (customer_id) DO UPDATE SET founder = excluded.founder, "
        "founded_at = excluded.founded_at, status = 'active', merged_into = NULL, "
        "merged_at = NULL"
    )
    wh.execute(
        "UPDATE customer_ids SET status = CASE WHEN m.merged_into IS NULL THEN 'retired' "
        "ELSE 'merged' END, merged_into = m.merged_into, merged_at = ? FROM _merged m "
        "WHERE customer_ids.customer_id = m.customer_id",
        [now],
    )
    wh.execute(
        "UPDATE customer_ids SET merged_into = m.merged_into FROM _merged m "
        "WHERE customer_ids.merged_into = m.customer_id AND m.merged_into IS NOT NULL"
    )


def assign_ids(wh: Warehouse) -> dict[str, int]:
    """Give every part of the touched clusters its customer id; fill :data:`CHANGED`."""
    drop(wh, *_SCRATCH, CHANGED, RESTITCH)
    _stage(wh)
    _apply(wh)
    # a node's customer after _apply: its part's, or none (blocked nodes, which _tn leaves
    # out, never hold one)
    wh.execute(
        f"CREATE TEMP TABLE {RESTITCH} AS SELECT tn.kind, tn.value, p.customer_id FROM _tn tn "
        f"LEFT JOIN _part_ids p ON p.part = tn.part LEFT JOIN {TOUCHED_NODES} f "
        "ON f.node_id = tn.node_id AND f.fresh WHERE tn.kind IN ('anonymous_id', 'user_id') "
        "AND f.node_id IS NULL AND p.customer_id IS DISTINCT FROM tn.customer_id"
    )
    wh.execute(
        f"CREATE TEMP TABLE {CHANGED} AS SELECT customer_id FROM _part_ids "
        "UNION SELECT customer_id FROM _merged"
    )
    counts = {
        "customers_new": int(wh.scalar("SELECT count(*) FROM _part_ids WHERE fresh") or 0),
        "customers_merged": int(
            wh.scalar("SELECT count(*) FROM _merged WHERE merged_into IS NOT NULL") or 0
        ),
    }
    counts |= follow_merges(wh, "_merged")  # journey instances and messages follow the merge
    drop(wh, *_SCRATCH)
    return counts
