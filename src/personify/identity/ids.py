"""Stable customer ids.

The rules, for every part (customer-sized piece) of a cluster that changed:

1. A part with no identifier but anonymous ones has no customer id (yet).
2. A part whose identifiers already carry customer ids keeps the **oldest** of them: the one
   whose founding identifier was seen first (``customer_ids.founded_at``), then the smaller id.
   The others are recorded as ``merged`` into it, and lookups by them follow ``merged_into``.
3. When a split leaves one id on several parts, the part holding the id's founder keeps it
   (else the part holding most identifiers with it); the others are treated as new.
4. A new customer's id is ``cus_`` + 20 hex digits of the MD5 of the project's id key and
   ``kind:value`` of its founder: the part's oldest non-anonymous identifier (first seen, then
   kind priority, kind, value). Rebuilding the same data from scratch therefore gives the same
   ids. The id key is derived from the project's ``signing_key`` (:func:`set_id_key`), so a
   customer id — shown by masked exports and ``sql --mask`` — cannot be tested against a guessed
   address; a project without a ``signing_key`` hashes ``kind:value`` alone (unkeyed). Rotating
   the key changes only the ids of customers founded afterwards: every other part keeps its id by
   rule 2 (a rebuild keeps the ids by identifier).
"""

from __future__ import annotations

import hashlib
import hmac
import weakref

from personify import clock
from personify.identity.graph import TOUCHED_NODES
from personify.identity.guard import TOUCHED
from personify.identity.merges import follow_merges
from personify.identity.rules import STAR_RANK_SQL
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop

CHANGED = "_changed_customers"
"""``(customer_id)``: every id whose customer changed in this pass (kept, new or merged)."""

RESTITCH = "_restitch"
"""``(kind, value, customer_id)``: the anonymous and user ids, known before this pass, whose
customer it changed (to ``customer_id``) — the only identifiers whose events *outside* the pass
can need a new customer: an event is stitched by the pass that reads it, and an identifier new
in this pass has no event a pass has read yet (:func:`personify.identity.stitch.stitch`)."""

_ID_KEYS: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def id_key(signing_key: str) -> str:
    """The id key derived from a project's ``signing_key`` (hex: no quoting issue in SQL)."""
    return hmac.new(signing_key.encode(), b"personify customer ids v1", hashlib.sha256).hexdigest()


def set_id_key(wh: object, signing_key: str | None) -> None:
    """Key the new customer ids minted through ``wh`` with ``signing_key`` (``None``: unkeyed).
    The session sets it when it opens the warehouse
    (:func:`personify.privacy.fields.attach`)."""
    if signing_key:
        _ID_KEYS[wh] = id_key(signing_key)
    else:
        _ID_KEYS.pop(wh, None)


def id_key_of(wh: object) -> str:
    """The id key set for ``wh`` (``""`` without a ``signing_key``)."""
    return _ID_KEYS.get(wh, "")


def new_id_sql(wh: object, kind: str, value: str) -> tuple[str, list[object]]:
    """SQL of a new customer's id (rule 4) from its founder's ``kind`` and ``value``
    expressions, and the parameter it binds (the key is never in SQL text)."""
    return f"'cus_' || substr(md5(? || {kind} || ':' || {value}), 1, 20)", [_ID_KEYS.get(wh, "")]


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
    new_id, key = new_id_sql(wh, "f.kind", "f.value")
    wh.execute(
        f"CREATE TEMP TABLE _part_ids AS SELECT f.part, coalesce(k.customer_id, {new_id}) "
        "AS customer_id, k.customer_id IS NULL AS fresh, f.node_id AS founder, "
        "f.first_seen AS founded_at FROM _founders f LEFT JOIN (SELECT part, customer_id FROM "
        "(SELECT o.*, row_number() OVER (PARTITION BY part ORDER BY founded_at, customer_id) "
        "AS rn FROM _owned o) y WHERE rn = 1) k ON k.part = f.part",
        key,
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
