"""Rules for one profile, in Python, in real time — the same answer as the batch SQL.

:func:`evaluate_profile` takes the very rule definitions :mod:`~personify.audiences.batch`
compiles and a profile (a ``customers`` row as a mapping, e.g. from a cache at send time) and
returns the tags it earns, with their content variables. :func:`explain_profile` says, for every
rule in order, what its condition read, what each comparison gave and why the rule did or did not
assign its tag. Resolution is the batch's: rules in order; a TRUE condition assigns the tag unless
an earlier rule of the same exclusive group matched or an earlier rule assigned the same tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlglot import exp

from personify import clock
from personify.audiences.interpreter import evaluate, normalize_profile
from personify.audiences.rules import Rule
from personify.errors import NotFound
from personify.warehouse.base import Warehouse


@dataclass(frozen=True)
class Assignment:
    """A tag a profile earns."""

    tag: str
    rule: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One comparison evaluated while explaining a condition."""

    sql: str
    operands: list[Any]
    result: bool | None


@dataclass(frozen=True)
class Outcome:
    """What one rule did for one profile."""

    rule: Rule
    matched: bool | None
    """The condition's value: TRUE, FALSE or NULL (unknown: a field it needs is NULL)."""
    assigned: bool
    reason: str
    fields: dict[str, Any]
    """The profile fields the rule reads, with their values."""
    checks: list[Check] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def explain_profile(
    rules: list[Rule], profile: Mapping[str, Any], now: datetime | None = None
) -> list[Outcome]:
    """Every rule's outcome for ``profile`` at ``now`` (default: the clock), in order."""
    at = now or clock.now()
    row = normalize_profile(profile)
    groups: dict[str, str] = {}
    tags: dict[str, str] = {}
    return [_outcome(rule, row, at, groups, tags) for rule in rules]


def evaluate_profile(
    rules: list[Rule], profile: Mapping[str, Any], now: datetime | None = None
) -> list[Assignment]:
    """The tags ``profile`` earns at ``now`` (default: the clock), in rule order."""
    return [
        Assignment(o.rule.tag, o.rule.id, o.variables)
        for o in explain_profile(rules, profile, now)
        if o.assigned
    ]


def _outcome(
    rule: Rule,
    row: dict[str, Any],
    now: datetime,
    groups: dict[str, str],
    tags: dict[str, str],
) -> Outcome:
    fields = {name: row.get(name) for name in rule.columns}
    if not rule.active(now):
        why = "disabled" if not rule.enabled else f"expired at {rule.expires_at:%Y-%m-%d %H:%M}Z"
        return Outcome(rule, None, False, f"not evaluated: the rule is {why}", fields)
    checks: list[Check] = []

    def trace(node: exp.Expr, operands: list[Any], result: Any) -> None:
        checks.append(Check(node.sql(dialect="duckdb"), operands, result))

    value = evaluate(rule.when.tree, row, now, trace)
    matched = value if isinstance(value, bool) else None
    if matched is not True:
        reason = (
            "condition is false"
            if matched is False
            else "condition is unknown (NULL): a field it needs is missing"
        )
        return Outcome(rule, matched, False, reason, fields, checks)
    if rule.group and rule.group in groups:
        reason = f"matched, but rule {groups[rule.group]!r} already took group {rule.group!r}"
        return Outcome(rule, True, False, reason, fields, checks)
    if rule.group:
        groups[rule.group] = rule.id
    if rule.tag in tags:
        reason = f"matched, but rule {tags[rule.tag]!r} already assigned tag {rule.tag!r}"
        return Outcome(rule, True, False, reason, fields, checks)
    tags[rule.tag] = rule.id
    variables = {name: evaluate(e.tree, row, now) for name, e in rule.variables}
    return Outcome(rule, True, True, f"assigned tag {rule.tag!r}", fields, checks, variables)


def find_profile(wh: Warehouse, text: str, resolve: Any = None) -> dict[str, Any]:
    """The ``customers`` row of a customer id or email (``resolve(wh, text)`` is tried last,
    e.g. identity resolution's lookup of any identifier). Raises :class:`NotFound`."""
    value = text.strip()
    for where in ("customer_id = ?", "lower(email) = lower(?)"):
        rows = wh.fetch_arrow(
            f"SELECT * FROM customers WHERE {where} ORDER BY customer_id LIMIT 1", [value]
        ).to_pylist()
        if rows:
            return dict(rows[0])
    if resolve is not None:
        customer_id = resolve(wh, value)
        rows = wh.fetch_arrow(
            "SELECT * FROM customers WHERE customer_id = ?", [customer_id]
        ).to_pylist()
        if rows:
            return dict(rows[0])
    raise NotFound(
        f"no customer with id or email {value!r}",
        hint="check the spelling, or run `personify run` so profiles are built",
    )
