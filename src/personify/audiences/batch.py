"""Batch rules: every rule evaluated over every customer in the warehouse, then applied.

The rules are compiled (:mod:`personify.audiences.compile`: one scan of ``customers`` for every
rule's flag, then ``CASE`` resolution of groups and tags — the same resolution
:mod:`personify.audiences.realtime` applies to one profile) into a temporary table of earned
``(customer_id, tag, rule, variables, expires_at)``, and ``customer_tags`` is brought to it by
difference:

- tags no longer earned are deleted (``audience_changes``: ``kind = 'tag'``, ``exited``) —
  unless their rule (still active) has a ``ttl`` and their ``expires_at`` is still ahead: a
  ttl tag lasts at least that long once assigned (held as it was, even beside a tag another
  rule of its group assigns meanwhile), then as long as it is earned;
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
from personify.audiences.memberships import create_temp_as, reading
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


def write_tags(
    wh: Warehouse, rules: list[Rule], *, now: datetime, only: str | None = None
) -> TagCounts:
    """Evaluate ``rules`` over every customer at ``now`` and bring ``customer_tags`` to it.

    ``only``: a (temporary) table of ``customer_id`` s — evaluate and update just those
    customers, with the same SQL (the real-time path, :mod:`personify.realtime.reactions`)."""
    key = uuid.uuid4().hex[:12]
    names = [f"_personify_{k}_{key}" for k in ("flags", "tags", "diff")]
    flags, desired, diff = (quote(n) for n in names)
    compiled = plan(rules, now)
    with wh.transaction():
        wh.execute(create_temp_as(names[0], flags_query(compiled, only)))
        earned = tags_query(compiled, names[0])
        if only is None and not wh.fetch("SELECT 1 FROM customer_tags LIMIT 1"):
            # nothing stored (a first population): every earned tag is new — the earned
            # tags are the difference, without a join against the stored ones nor a copy of
            # them; each tag and its change row are written by one statement
            tagged = wh.execute(
                reading(_FIRST, "_personify_earned", earned, "e"), [now, now, datetime.now(UTC)]
            )
            if tagged < 0:  # an engine that does not report counts
                tagged = int(wh.scalar("SELECT count(*) FROM customer_tags") or 0)
            added, removed, updated = tagged, 0, 0
        else:
            tagged = wh.execute(create_temp_as(names[1], earned))
            if tagged < 0:
                tagged = int(wh.scalar(f"SELECT count(*) FROM {desired}") or 0)
            stored = "customer_tags"
            if only is not None:
                stored = (
                    "(SELECT * FROM customer_tags WHERE customer_id IN "
                    f"(SELECT customer_id FROM {quote(only)}))"
                )
            held = [r.id for r in compiled.rules if r.ttl is not None]  # (active rules only)
            wh.execute(
                f"CREATE TEMP TABLE {diff} AS "
                + _DIFF.format(
                    desired=desired, stored=stored, held=", ".join("?" for _ in held) or "NULL"
                ),
                [*held, now],
            )
            counts = dict(wh.fetch(f"SELECT op, count(*) FROM {diff} GROUP BY op"))
            added, removed, updated = (
                int(counts.get(op, 0)) for op in ("entered", "exited", "changed")
            )
            _apply(wh, diff, now, added=added, removed=removed, updated=updated)
        for name in (flags, desired, diff):
            wh.execute(f"DROP TABLE IF EXISTS {name}")
    return TagCounts(len(compiled.rules), tagged, added, removed, updated)


_DIFF = """
SELECT * FROM (
  SELECT coalesce(d.customer_id, c.customer_id) AS customer_id, coalesce(d.tag, c.tag) AS tag,
    coalesce(d.rule, c.rule) AS rule, d.variables, d.expires_at,
    CASE WHEN c.customer_id IS NULL THEN 'entered'
      WHEN d.customer_id IS NULL AND c.rule IN ({held}) AND c.expires_at > ? THEN NULL
      WHEN d.customer_id IS NULL THEN 'exited'
      WHEN c.rule <> d.rule OR c.variables IS DISTINCT FROM d.variables THEN 'changed' END AS op
  FROM {desired} AS d FULL OUTER JOIN {stored} AS c
    ON c.customer_id = d.customer_id AND c.tag = d.tag
) AS compared WHERE op IS NOT NULL
"""
"""Earned tags against stored ones in one join (parameters: the active rules with a ttl, now):
new ones enter, lost ones exit — but a tag of an active rule with a ttl is held until its
``expires_at`` — and kept ones whose rule or variables changed are updated."""
_FIRST = (
    "WITH added AS (INSERT INTO customer_tags (customer_id, tag, rule, assigned_at, expires_at, "
    "variables) SELECT customer_id, tag, rule, ?, expires_at, variables FROM _personify_earned "
    "AS e RETURNING customer_id, tag, rule) INSERT INTO audience_changes (kind, name, "
    "customer_id, change, changed_at, recorded_at, rule) SELECT 'tag', tag, customer_id, "
    "'entered', ?, ?, rule FROM added"
)
"""A first population: the earned tags and their ``entered`` changes in one statement, reading
the earned-tags query directly (parameters: now, now, recorded at). At 1M customers, 2.66M
tags: ~10 % less CPU than two INSERTs from a copy (session 4), and the copy itself saved."""


_CHANGES = (
    "INSERT INTO audience_changes (kind, name, customer_id, change, changed_at, recorded_at, "
    "rule) SELECT 'tag', tag, customer_id, op, ?, ?, rule FROM {diff} "
    "WHERE op IN ('entered', 'exited')"
)
_SAME = "{diff}.customer_id = customer_tags.customer_id AND {diff}.tag = customer_tags.tag"


def _apply(
    wh: Warehouse, diff: str, now: datetime, *, added: int, removed: int, updated: int
) -> None:
    """``diff``: the difference table."""
    same = _SAME.format(diff=diff)
    if added or removed:
        wh.execute(_CHANGES.format(diff=diff), [now, datetime.now(UTC)])
    if removed:
        wh.execute(
            f"DELETE FROM customer_tags WHERE EXISTS (SELECT 1 FROM {diff} "
            f"WHERE {diff}.op = 'exited' AND {same})"
        )
    if updated:
        wh.execute(
            f"UPDATE customer_tags SET rule = {diff}.rule, variables = {diff}.variables "
            f"FROM {diff} WHERE {diff}.op = 'changed' AND {same}"
        )
    if added:
        wh.execute(
            "INSERT INTO customer_tags (customer_id, tag, rule, assigned_at, expires_at, "
            f"variables) SELECT customer_id, tag, rule, ?, expires_at, variables FROM {diff} "
            "WHERE op = 'entered'",
            [now],
        )
