"""Evaluate a checked rule expression for one profile, in Python, as the warehouse would.

Only the normalized trees :func:`~personify.audiences.expressions.check_expression` produces are
accepted. SQL's three-valued logic is kept: ``None`` is NULL (unknown), comparisons with NULL are
NULL, ``AND``/``OR`` follow Kleene logic, and a rule matches only when its condition is TRUE.
Timestamps are aware UTC datetimes; ``+ INTERVAL n MONTH`` clamps to the month's last day, as
DuckDB and PostgreSQL do. Profile values come normalized by :func:`normalize_profile`.

An optional ``trace`` callback receives every comparison-like node with its operand values and
result, which is what ``personify rules explain`` shows.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlglot import exp

from personify import clock
from personify.audiences.expressions import Kind, profile_columns

Trace = Callable[[exp.Expr, list[Any], Any], None]
"""``trace(node, operand_values, result)`` for each predicate evaluated."""


@dataclass(frozen=True)
class Span:
    """An interval: ``amount`` ``unit`` s (``SECOND`` … ``YEAR``)."""

    amount: int
    unit: str


def evaluate(
    tree: exp.Expr, profile: Mapping[str, Any], now: datetime, trace: Trace | None = None
) -> Any:
    """The value of ``tree`` for ``profile`` at ``now``."""
    return _Evaluator(profile, now, trace).eval(tree)


class _Evaluator:
    def __init__(self, profile: Mapping[str, Any], now: datetime, trace: Trace | None) -> None:
        self.profile = profile
        self.now = now.astimezone(UTC)
        self.trace = trace

    def eval(self, node: exp.Expr) -> Any:
        return _EVAL[type(node)](self, node)

    def args(self, node: exp.Expr) -> list[Any]:
        return [self.eval(node.this), *(self.eval(e) for e in node.expressions)]

    def predicate(self, node: exp.Expr, operands: list[Any], result: Any) -> Any:
        if self.trace is not None:
            self.trace(node, operands, result)
        return result


# ------------------------------------------------------------------------------ leaves
def _column(ev: _Evaluator, node: exp.Expr) -> Any:
    return ev.profile.get(node.name)


def _literal(ev: _Evaluator, node: exp.Expr) -> Any:
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return str(node.this)
    text = str(node.this)
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def _cast(ev: _Evaluator, node: exp.Expr) -> Any:
    assert isinstance(node, exp.Cast)
    value = ev.eval(node.this)
    if value is None:
        return None
    to = node.to.this
    if to == exp.DataType.Type.DOUBLE:
        return float(value)
    if to == exp.DataType.Type.BIGINT:
        return int(value)
    if to == exp.DataType.Type.DATE:
        return date.fromisoformat(value)
    if isinstance(value, str):
        return clock.parse_instant(value)
    return _as_instant(value)


def _as_instant(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _interval(ev: _Evaluator, node: exp.Expr) -> Span:
    assert isinstance(node, exp.Interval) and node.unit is not None
    return Span(int(node.this.name), node.unit.name.upper())


# ------------------------------------------------------------------------------ arithmetic
def _shift(instant: datetime, span: Span, sign: int) -> datetime:
    amount = span.amount * sign
    if span.unit in ("MONTH", "YEAR"):
        months = amount * (12 if span.unit == "YEAR" else 1)
        index = instant.year * 12 + instant.month - 1 + months
        year, month = divmod(index, 12)
        day = min(instant.day, calendar.monthrange(year, month + 1)[1])
        return instant.replace(year=year, month=month + 1, day=day)
    return instant + timedelta(**{span.unit.lower() + "s": amount})


def _arith(ev: _Evaluator, node: exp.Expr) -> Any:
    left, right = ev.eval(node.this), ev.eval(node.expression)
    if left is None or right is None:
        return None
    if isinstance(right, Span):
        return _shift(_as_instant(left), right, -1 if isinstance(node, exp.Sub) else 1)
    if isinstance(node, exp.Add):
        return left + right
    if isinstance(node, exp.Sub):
        return left - right
    if isinstance(node, exp.Mul):
        return left * right
    return left / right  # operands are DOUBLE and the divisor is never 0 (NULLIF)


def _neg(ev: _Evaluator, node: exp.Expr) -> Any:
    value = ev.eval(node.this)
    return None if value is None else -value


def _nullif(ev: _Evaluator, node: exp.Expr) -> Any:
    value, other = ev.eval(node.this), ev.eval(node.expression)
    return None if value is not None and other is not None and value == other else value


# ------------------------------------------------------------------------------ predicates
_COMPARE: dict[type[exp.Expr], Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: bool(a == b),
    exp.NEQ: lambda a, b: bool(a != b),
    exp.LT: lambda a, b: bool(a < b),
    exp.LTE: lambda a, b: bool(a <= b),
    exp.GT: lambda a, b: bool(a > b),
    exp.GTE: lambda a, b: bool(a >= b),
}


def _comparison(ev: _Evaluator, node: exp.Expr) -> bool | None:
    left, right = ev.eval(node.this), ev.eval(node.expression)
    result = None if left is None or right is None else _COMPARE[type(node)](left, right)
    return ev.predicate(node, [left, right], result)  # type: ignore[no-any-return]


def _and(ev: _Evaluator, node: exp.Expr) -> bool | None:
    values = (ev.eval(node.this), ev.eval(node.expression))
    if False in values:
        return False
    return None if None in values else True


def _or(ev: _Evaluator, node: exp.Expr) -> bool | None:
    values = (ev.eval(node.this), ev.eval(node.expression))
    if True in values:
        return True
    return None if None in values else False


def _not(ev: _Evaluator, node: exp.Expr) -> bool | None:
    value = ev.eval(node.this)
    return None if value is None else not value


def _is(ev: _Evaluator, node: exp.Expr) -> bool:
    value = ev.eval(node.this)
    target = node.expression
    result = value is None if isinstance(target, exp.Null) else value is target.this
    return ev.predicate(node, [value], result)  # type: ignore[no-any-return]


def _in(ev: _Evaluator, node: exp.Expr) -> bool | None:
    value, *items = ev.args(node)
    if value is None:
        result = None
    elif any(item is not None and item == value for item in items):
        result = True
    else:
        result = None if None in items else False
    return ev.predicate(node, [value, *items], result)  # type: ignore[no-any-return]


def _between(ev: _Evaluator, node: exp.Expr) -> bool | None:
    value, low, high = (ev.eval(node.this), ev.eval(node.args["low"]), ev.eval(node.args["high"]))
    parts = [None if value is None or low is None else value >= low]
    parts.append(None if value is None or high is None else value <= high)
    result = False if False in parts else (None if None in parts else True)
    return ev.predicate(node, [value, low, high], result)  # type: ignore[no-any-return]


def _like(ev: _Evaluator, node: exp.Expr) -> bool | None:
    value = ev.eval(node.this)
    pattern = str(node.expression.this)
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    result = None if value is None else re.fullmatch(regex, value, re.DOTALL) is not None
    return ev.predicate(node, [value, pattern], result)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ functions
def _coalesce(ev: _Evaluator, node: exp.Expr) -> Any:
    return next((v for v in ev.args(node) if v is not None), None)


def _extreme(ev: _Evaluator, node: exp.Expr) -> Any:
    values = [v for v in ev.args(node) if v is not None]
    if not values:
        return None
    return max(values) if isinstance(node, exp.Greatest) else min(values)


def _unary(fn: Callable[[Any], Any]) -> Callable[[_Evaluator, exp.Expr], Any]:
    def run(ev: _Evaluator, node: exp.Expr) -> Any:
        value = ev.eval(node.this)
        return None if value is None else fn(value)

    return run


def _case(ev: _Evaluator, node: exp.Expr) -> Any:
    for branch in node.args.get("ifs") or []:
        if ev.eval(branch.this) is True:
            return ev.eval(branch.args["true"])
    default = node.args.get("default")
    return None if default is None else ev.eval(default)


def _anonymous(ev: _Evaluator, node: exp.Expr) -> Any:
    assert node.name.upper() == "JSON_ARRAY_LENGTH"
    value = ev.eval(node.expressions[0])
    if value is None:
        return None
    return len(value) if isinstance(value, list) else 0


_EVAL: dict[type[exp.Expr], Callable[[_Evaluator, exp.Expr], Any]] = {
    exp.Column: _column,
    exp.Literal: _literal,
    exp.Boolean: lambda ev, node: bool(node.this),
    exp.Null: lambda ev, node: None,
    exp.CurrentTimestamp: lambda ev, node: ev.now,
    exp.CurrentDate: lambda ev, node: ev.now.date(),
    exp.Cast: _cast,
    exp.Interval: _interval,
    exp.Paren: lambda ev, node: ev.eval(node.this),
    exp.Neg: _neg,
    **dict.fromkeys((exp.Add, exp.Sub, exp.Mul, exp.Div), _arith),
    exp.Nullif: _nullif,
    **dict.fromkeys(_COMPARE, _comparison),
    exp.And: _and,
    exp.Or: _or,
    exp.Not: _not,
    exp.Is: _is,
    exp.In: _in,
    exp.Between: _between,
    exp.Like: _like,
    exp.Coalesce: _coalesce,
    exp.Abs: _unary(abs),
    exp.Floor: _unary(math.floor),
    exp.Ceil: _unary(math.ceil),
    **dict.fromkeys((exp.Greatest, exp.Least), _extreme),
    exp.Case: _case,
    exp.Anonymous: _anonymous,
}


# ------------------------------------------------------------------------------ profiles
def normalize_profile(row: Mapping[str, Any]) -> dict[str, Any]:
    """A profile row as the evaluator expects it, whatever driver read it: JSON parsed,
    timestamps aware UTC, numbers as ``int``/``float``."""
    kinds = profile_columns()
    return {name: _normalize(kinds.get(name), value) for name, value in row.items()}


def _normalize(kind: Kind | None, value: Any) -> Any:
    if value is None:
        return None
    if kind == Kind.JSON:
        return json.loads(value) if isinstance(value, str | bytes) else value
    if kind == Kind.TS and isinstance(value, datetime | date):
        return _as_instant(value).astimezone(UTC)
    if kind == Kind.NUM and not isinstance(value, bool):
        return value if isinstance(value, int) else float(value)
    return value
