"""Rules compiled into SQL: one scan of ``customers``, then one small query per tag.

Every active rule ``i`` (in evaluation order) becomes a flag ``_m{i} = (when) IS TRUE`` computed
in a single scan of ``customers``. The resolution :mod:`personify.audiences.realtime` applies to
one profile is then plain ``CASE`` arithmetic on those flags, row by row — no window functions:

- each exclusive group ``g`` gets ``_g{g}``: the first of its rules whose flag is set;
- a rule *survives* if its flag is set and it is its group's winner (or has no group);
- each tag ``t`` gets ``_w{t}``: the first surviving rule that assigns it.

The scan (with the columns the content variables read) is materialized once
(:func:`flags_query`); :func:`tags_query` unpivots it into one row per earned
``(customer_id, tag, rule, variables, expires_at)``, computing the winner's variables
(``JSON_OBJECT``) and ``expires_at`` (``now + ttl``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from personify import clock
from personify.audiences.rules import Rule
from personify.warehouse.query import pin_time


@dataclass(frozen=True)
class Plan:
    """The active rules at one instant, and who competes with whom."""

    rules: list[Rule]
    groups: dict[str, list[int]]
    """Group → its rules' positions, in order."""
    tags: dict[str, list[int]]
    """Tag → the positions of the rules assigning it, in order."""
    now: datetime


def plan(rules: Sequence[Rule], now: datetime) -> Plan:
    """Which rules apply at ``now``, grouped by exclusive group and by tag."""
    active = [r for r in rules if r.active(now)]
    groups: dict[str, list[int]] = {}
    tags: dict[str, list[int]] = {}
    for i, rule in enumerate(active):
        if rule.group:
            groups.setdefault(rule.group, []).append(i)
        tags.setdefault(rule.tag, []).append(i)
    return Plan(active, groups, tags, now)


def _first(positions: list[int], prefix: str) -> exp.Case:
    """``CASE WHEN {prefix}p1 THEN p1 WHEN … END``: the first position whose flag is set."""
    return exp.Case(ifs=[exp.If(this=exp.column(f"{prefix}{p}"), true=_n(p)) for p in positions])


def _n(value: int) -> exp.Expr:
    return exp.Literal.number(value)


def flags_query(p: Plan, only: str | None = None) -> exp.Select:
    """One scan of ``customers``: the id, the variables' columns, and every rule's flags
    (``only``: a table of ``customer_id`` s to restrict the scan to — the real-time path)."""
    with clock.frozen(p.now):
        flags = [
            exp.Is(this=exp.paren(pin_time(r.when.tree.copy())), expression=exp.true()).as_(
                f"_m{i}"
            )
            for i, r in enumerate(p.rules)
        ]
    columns = sorted(
        {c for r in p.rules for _, e in r.variables for c in e.columns} - {"customer_id"}
    )
    scan = exp.select("customer_id", *columns, *flags).from_("customers")
    if only is not None:
        scan = scan.where(
            exp.column("customer_id").isin(query=exp.select("customer_id").from_(only))
        )
    group_of = {i: g for g, members in enumerate(p.groups.values()) for i in members}
    winners = [_first(members, "_m").as_(f"_g{g}") for g, members in enumerate(p.groups.values())]
    grouped = exp.select("*", *winners).from_(scan.subquery("scan")) if winners else scan
    survives = [
        (
            exp.and_(exp.column(f"_m{i}"), exp.column(f"_g{group_of[i]}").eq(_n(i)))
            if i in group_of
            else exp.column(f"_m{i}")
        ).as_(f"_s{i}")
        for i in range(len(p.rules))
    ]
    surviving = exp.select("*", *survives).from_(grouped.subquery("grouped"))
    tag_winners = [
        _first(positions, "_s").as_(f"_w{t}") for t, positions in enumerate(p.tags.values())
    ]
    return exp.select("*", *tag_winners).from_(surviving.subquery("surviving"))


def tags_query(p: Plan, flags_table: str) -> exp.Query:
    """One row per earned ``(customer_id, tag, rule, variables, expires_at)`` from the flags."""
    selects = [
        _tag_select(p, t, tag, positions, flags_table)
        for t, (tag, positions) in enumerate(p.tags.items())
    ]
    if not selects:
        return _empty()
    query: exp.Query = selects[0]
    for select in selects[1:]:
        query = exp.union(query, select, distinct=False)
    return query


def _tag_select(p: Plan, t: int, tag: str, positions: list[int], flags_table: str) -> exp.Select:
    winner = exp.column(f"_w{t}")

    def by_winner(value: Callable[[Rule], exp.Expr]) -> exp.Case:
        ifs = [exp.If(this=_n(i), true=value(p.rules[i])) for i in positions]
        return exp.Case(this=winner.copy(), ifs=ifs)

    with clock.frozen(p.now):
        return (
            exp.select(
                exp.column("customer_id"),
                exp.Literal.string(tag).as_("tag"),
                by_winner(lambda r: exp.Literal.string(r.id)).as_("rule"),
                by_winner(_variables).as_("variables"),
                by_winner(lambda r: _expires(r, p.now)).as_("expires_at"),
            )
            .from_(exp.to_table(flags_table))
            .where(exp.not_(winner.is_(exp.null())))
        )


def _variables(rule: Rule) -> exp.Expr:
    return exp.JSONObject(
        expressions=[
            exp.JSONKeyValue(this=exp.Literal.string(name), expression=pin_time(e.tree.copy()))
            for name, e in rule.variables
        ]
    )


def _expires(rule: Rule, now: datetime) -> exp.Expr:
    if rule.ttl is None:
        return exp.cast(exp.null(), "TIMESTAMPTZ")
    return exp.cast(exp.Literal.string((now + rule.ttl).isoformat()), "TIMESTAMPTZ")


def _empty() -> exp.Select:
    return (
        exp.select(
            exp.column("customer_id"),
            exp.cast(exp.null(), "VARCHAR").as_("tag"),
            exp.cast(exp.null(), "VARCHAR").as_("rule"),
            exp.JSONObject(expressions=[]).as_("variables"),
            exp.cast(exp.null(), "TIMESTAMPTZ").as_("expires_at"),
        )
        .from_("customers")
        .where(exp.false())
    )
