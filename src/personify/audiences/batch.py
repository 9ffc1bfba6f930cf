"""Batch rules: every rule compiled into one query over ``customers``, run in the warehouse.

Each active rule becomes a filtered scan of ``customers`` (its normalized ``when`` with ``--now``
pinned) producing ``(customer_id, ord, rule, tag, grp, variables, expires_at)``; the scans are
``UNION ALL``-ed; window functions keep the first match per exclusive group, then the first rule
per tag — the same resolution :mod:`personify.audiences.realtime` applies to one profile. The
result lands in a temporary table and ``customer_tags`` is brought to it by difference:

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

import sqlglot
from sqlglot import exp

from personify import clock
from personify.audiences.memberships import create_temp_as
from personify.audiences.rules import Rule
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.query import pin_time

_GROUPED = """
SELECT *, CASE WHEN grp IS NULL THEN 1
  ELSE row_number() OVER (PARTITION BY customer_id, grp ORDER BY ord) END AS group_rank
FROM matches
"""
_DEDUPED = """
SELECT *, row_number() OVER (PARTITION BY customer_id, tag ORDER BY ord) AS tag_rank
FROM matches
"""
_RESULT_COLUMNS = ("customer_id", "tag", "rule", "variables", "expires_at")


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


def _branch(rule: Rule, ordinal: int, now: datetime) -> exp.Select:
    pairs = [
        exp.JSONKeyValue(this=exp.Literal.string(name), expression=pin_time(e.tree.copy()))
        for name, e in rule.variables
    ]
    expires = (
        exp.cast(exp.Literal.string((now + rule.ttl).isoformat()), "TIMESTAMPTZ")
        if rule.ttl
        else exp.cast(exp.null(), "TIMESTAMPTZ")
    )
    group = exp.Literal.string(rule.group) if rule.group else exp.cast(exp.null(), "VARCHAR")
    return (
        exp.select(
            exp.column("customer_id"),
            exp.Literal.number(ordinal).as_("ord"),
            exp.Literal.string(rule.id).as_("rule"),
            exp.Literal.string(rule.tag).as_("tag"),
            group.as_("grp"),
            exp.JSONObject(expressions=pairs).as_("variables"),
            expires.as_("expires_at"),
        )
        .from_("customers")
        .where(pin_time(rule.when.tree.copy()))
    )


def tags_query(rules: list[Rule], now: datetime) -> exp.Query:
    """The query of every (customer, tag, rule, variables, expires_at) the rules earn at ``now``."""
    active = [r for r in rules if r.active(now)]
    with clock.frozen(now):
        branches = [_branch(rule, i, now) for i, rule in enumerate(active)]
    if not branches:
        empty = _branch(_NO_RULE, 0, now).where(exp.false(), append=False)
        return exp.select(*_RESULT_COLUMNS).from_(empty.subquery("matches"))
    matches: exp.Query = branches[0]
    for branch in branches[1:]:
        matches = exp.union(matches, branch, distinct=False)
    groups = {r.group for r in active}
    if groups != {None}:
        matches = _wrap(_GROUPED, matches).where("group_rank = 1")
    if len({r.tag for r in active}) < len(active):
        matches = _wrap(_DEDUPED, matches).where("tag_rank = 1")
    return exp.select(*_RESULT_COLUMNS).from_(matches.subquery("matches"))


def _wrap(template: str, inner: exp.Query) -> exp.Select:
    ranked = sqlglot.parse_one(template, read="duckdb")
    assert isinstance(ranked, exp.Select)
    ranked = ranked.from_(inner.subquery("matches"), copy=False)
    return exp.select("*").from_(ranked.subquery("ranked"))


def write_tags(wh: Warehouse, rules: list[Rule], *, now: datetime) -> TagCounts:
    """Evaluate ``rules`` over every customer at ``now`` and bring ``customer_tags`` to it."""
    key = uuid.uuid4().hex[:12]
    names = [f"_personify_{k}_{key}" for k in ("tags", "gone", "fresh")]
    desired, gone, fresh = (quote(n) for n in names)
    with wh.transaction():
        wh.execute(create_temp_as(names[0], tags_query(rules, now)))
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
        for name in (desired, gone, fresh):
            wh.execute(f"DROP TABLE {name}")
    active = sum(1 for r in rules if r.active(now))
    return TagCounts(active, tagged, added, removed, updated)


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
    "rule) SELECT 'tag', tag, customer_id, '{change}', ?, ?, rule FROM {side} "
    "ON CONFLICT DO NOTHING"
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


def _no_rule() -> Rule:
    from personify.audiences.expressions import check_expression, profile_columns

    false = check_expression("FALSE", dialect="duckdb", columns=profile_columns())
    return Rule("", "", "", false, (), 0, None, None, None, True, "", 0)


_NO_RULE = _no_rule()
