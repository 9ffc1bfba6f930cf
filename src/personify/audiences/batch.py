"""Batch rules: every rule evaluated over every customer in the warehouse, then applied.

The rules are compiled (:mod:`personify.audiences.compile`: one scan of ``customers`` for every
rule's flag, then ``CASE`` resolution of groups and tags — the same resolution
:mod:`personify.audiences.realtime` applies to one profile) into a temporary table of earned
``(customer_id, tag, rule, variables, expires_at)``, and ``customer_tags`` is brought to it by
difference:

- tags no longer earned are deleted (``audience_changes``: ``kind = 'tag'``, ``exited``);
- tags kept keep their ``assigned_at`` and ``expires_at``; their rule and variables follow;
- new tags are inserted with ``assigned_at = now`` and ``expires_at = now + ttl``
  (``audience_changes``: ``entered``).

The rules engine owns ``customer_tags``: a tag no rule assigns any more is removed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from personify.audiences.compile import flags_query, plan, tags_query
from personify.audiences.memberships import create_temp_as
from personify.audiences.rules import Rule
from personify.warehouse.base import Warehouse, quote


@dataclass(frozen=True)
class TagCounts:
    """What one batch evaluation did."""

    rules: int
    """Rules evaluated (active at ``now``)."""
    tagged: int
    """(customer, tag) pairs earned now."""
    added: int
    removed: int
    updated: int


def write_tags(wh: Warehouse, rules: list[Rule], *, now: datetime) -> TagCounts:
    """Evaluate ``rules`` over every customer at ``now`` and bring ``customer_tags`` to it."""
    key = uuid.uuid4().hex[:12]
    names = [f"_personify_{k}_{key}" for k in ("flags", "tags", "gone", "fresh")]
    flags, desired, gone, fresh = (quote(n) for n in names)
    compiled = plan(rules, now)
    with wh.transaction():
        wh.execute(create_temp_as(names[0], flags_query(compiled)))
        wh.execute(create_temp_as(names[1], tags_query(compiled, names[0])))
        tagged = int(wh.scalar(f"SELECT count(*) FROM {desired}") or 0)
        removed = _side(wh, gone, _GONE.format(desired=desired))
        added = _side(wh, fresh, _FRESH.format(desired=desired))
        wall = datetime.now(UTC)
        if removed:
            wh.execute(_CHANGES.format(change="exited", side=gone), [now, wall])
            wh.execute(
                "DELETE FROM customer_tags WHERE EXISTS (SELECT 1 FROM "
                f"{gone} AS g WHERE g.customer_id = customer_tags.customer_id "
                "AND g.tag = customer_tags.tag)"
            )
        updated = _update_kept(wh, desired)
        if added:
            wh.execute(_CHANGES.format(change="entered", side=fresh), [now, wall])
            wh.execute(
                "INSERT INTO customer_tags (customer_id, tag, rule, assigned_at, expires_at, "
                f"variables) SELECT customer_id, tag, rule, ?, expires_at, variables FROM {fresh}",
                [now],
            )
        for name in (flags, desired, gone, fresh):
            wh.execute(f"DROP TABLE {name}")
    return TagCounts(len(compiled.rules), tagged, added, removed, updated)


_GONE = (
    "SELECT c.customer_id, c.tag, c.rule FROM customer_tags AS c "
    "WHERE NOT EXISTS (SELECT 1 FROM {desired} AS d WHERE d.customer_id = c.customer_id "
    "AND d.tag = c.tag)"
)
_FRESH = (
    "SELECT d.* FROM {desired} AS d WHERE NOT EXISTS (SELECT 1 FROM customer_tags AS c "
    "WHERE d.customer_id = c.customer_id AND d.tag = c.tag)"
)
_CHANGES = (
    "INSERT INTO audience_changes (kind, name, customer_id, change, changed_at, recorded_at, "
    "rule) SELECT 'tag', tag, customer_id, '{change}', ?, ?, rule FROM {side}"
)


def _side(wh: Warehouse, name: str, select: str) -> int:
    """Materialize one side of the difference and count it."""
    wh.execute(f"CREATE TEMP TABLE {name} AS {select}")
    return int(wh.scalar(f"SELECT count(*) FROM {name}") or 0)


def _update_kept(wh: Warehouse, desired: str) -> int:
    changed = (
        f"FROM {desired} AS d WHERE d.customer_id = customer_tags.customer_id "
        "AND d.tag = customer_tags.tag AND (customer_tags.rule <> d.rule "
        "OR customer_tags.variables IS DISTINCT FROM d.variables)"
    )
    count = int(
        wh.scalar(f"SELECT count(*) FROM customer_tags WHERE EXISTS (SELECT 1 {changed})") or 0
    )
    if count:
        wh.execute(f"UPDATE customer_tags SET rule = d.rule, variables = d.variables {changed}")
    return count
