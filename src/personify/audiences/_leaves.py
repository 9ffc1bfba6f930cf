"""Checking the leaves of a rule expression: columns, literals, typed literals, now, intervals."""

from __future__ import annotations

import re
from datetime import date

from sqlglot import exp

from personify import clock
from personify.audiences._kinds import (
    DATE,
    DOUBLE,
    TIMESTAMPTZ,
    Checker,
    ExpressionError,
    Handler,
    Kind,
    Typed,
)

_INT = re.compile(r"^-?\d+$")
UNITS = ("SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR")
"""Interval units a rule may use."""
NOW_NAMES = frozenset({"now", "getdate", "sysdate", "transaction_timestamp", "utc_timestamp"})
"""Function spellings of "now" sqlglot leaves as plain calls."""
_TIMESTAMP_TYPES = {
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.TIMESTAMPNTZ,
    exp.DataType.Type.TIMESTAMPLTZ,
    exp.DataType.Type.DATETIME,
}


def column(c: Checker, node: exp.Expr) -> Typed:
    """A profile column, unqualified."""
    assert isinstance(node, exp.Column)
    if node.table:
        return _dotted(c, node)
    name = node.name.lower()
    try:
        kind = c.use(name)
    except KeyError as e:
        raise ExpressionError(
            f"unknown profile column {node.name!r}", node, str(e.args[0])
        ) from None
    return Typed(exp.column(name), kind)


def _dotted(c: Checker, node: exp.Column) -> Typed:
    """A dotted name the environment offers (a journey branch's ``message.STEP.opened``): kept
    as written, for its caller to compile (:func:`personify.journeys.engine`); any other
    qualified column is refused."""
    name = ".".join(p.name.lower() for p in node.parts)
    head = node.parts[0].name.lower() + "."
    offered = [k for k in c.columns if k.startswith(head)]
    if not offered:
        raise ExpressionError(
            f"qualified column {node.sql()} is not allowed", node, "name the profile column alone"
        )
    try:
        kind = c.use(name)
    except KeyError:
        raise ExpressionError(
            f"unknown name {node.sql()!r}", node, "known here: " + ", ".join(sorted(offered))
        ) from None
    return Typed(exp.column(*reversed([p.name.lower() for p in node.parts])), kind)


def literal(c: Checker, node: exp.Expr) -> Typed:
    """Strings stay text; integers stay BIGINT; other numbers become DOUBLE."""
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return Typed(exp.Literal.string(node.this), Kind.TEXT)
    text = str(node.this)
    if _INT.match(text):
        if abs(int(text)) >= 2**63:
            raise ExpressionError(f"the number {text} is too large", node)
        return Typed(exp.Literal.number(text), Kind.NUM)
    try:
        value = float(text)
    except ValueError:
        raise ExpressionError(f"{text!r} is not a number", node) from None
    if value != value or abs(value) == float("inf"):
        raise ExpressionError(f"{text!r} is not a finite number", node)
    return Typed(exp.cast(exp.Literal.number(text), DOUBLE), Kind.NUM)


def boolean(c: Checker, node: exp.Expr) -> Typed:
    """TRUE / FALSE."""
    return Typed(node.copy(), Kind.BOOL)


def null(c: Checker, node: exp.Expr) -> Typed:
    """NULL."""
    return Typed(exp.null(), Kind.NULL)


def now(c: Checker, node: exp.Expr) -> Typed:
    """Every spelling of "now" becomes CURRENT_TIMESTAMP (pinned to ``--now`` when run)."""
    return Typed(exp.CurrentTimestamp(), Kind.TS)


def today(c: Checker, node: exp.Expr) -> Typed:
    """CURRENT_DATE (the UTC date of ``--now``)."""
    return Typed(exp.CurrentDate(), Kind.DATE)


def cast(c: Checker, node: exp.Expr) -> Typed:
    """Typed literals (``DATE '…'``, ``TIMESTAMP '…'``) and ``CAST(number AS DOUBLE)``."""
    assert isinstance(node, exp.Cast)
    to, inner = node.to.this, node.this
    if isinstance(inner, exp.Literal) and inner.is_string:
        if to == exp.DataType.Type.DATE:
            return date_literal(inner)
        if to in _TIMESTAMP_TYPES:
            return timestamp_literal(inner)
    if to in (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT):
        typed = c.kinds(inner, Kind.NUM, what="CAST AS DOUBLE")
        return Typed(exp.cast(typed.node, DOUBLE), Kind.NUM)
    raise ExpressionError(
        f"CAST to {node.to.sql()} is not allowed",
        node,
        "typed literals (DATE '2026-01-31', TIMESTAMP '2026-01-31 09:00:00') and "
        "CAST(number AS DOUBLE) are",
    )


def date_literal(node: exp.Literal) -> Typed:
    """``'YYYY-MM-DD'`` as a DATE."""
    try:
        value = date.fromisoformat(str(node.this).strip())
    except ValueError:
        raise ExpressionError(f"{node.this!r} is not a date (YYYY-MM-DD)", node) from None
    return Typed(exp.cast(exp.Literal.string(value.isoformat()), DATE), Kind.DATE)


def timestamp_literal(node: exp.Literal) -> Typed:
    """An ISO 8601 instant (naive: UTC) as a TIMESTAMPTZ with an explicit offset."""
    try:
        value = clock.parse_instant(str(node.this))
    except ValueError:
        raise ExpressionError(f"{node.this!r} is not an ISO 8601 instant", node) from None
    return Typed(exp.cast(exp.Literal.string(value.isoformat()), TIMESTAMPTZ), Kind.TS)


def interval(c: Checker, node: exp.Expr) -> Typed:
    """``INTERVAL n UNIT`` with a whole ``n`` and one unit from :data:`UNITS`."""
    assert isinstance(node, exp.Interval)
    amount = str(node.this.name).strip() if isinstance(node.this, exp.Literal) else ""
    unit = (node.unit.name if node.unit is not None else "").upper().removesuffix("S")
    if not _INT.match(amount) or unit not in UNITS or abs(int(amount)) > 1_000_000:
        raise ExpressionError(
            f"{node.sql()} is not a simple interval",
            node,
            "write e.g. INTERVAL 60 DAY: one whole number and one unit (second, minute, hour, "
            "day, week, month, year)",
        )
    return Typed(exp.Interval(this=exp.Literal.string(amount), unit=exp.var(unit)), Kind.INTERVAL)


HANDLERS: dict[type[exp.Expr], Handler] = {
    exp.Column: column,
    exp.Literal: literal,
    exp.Boolean: boolean,
    exp.Null: null,
    exp.CurrentTimestamp: now,
    exp.CurrentDatetime: now,
    exp.Localtimestamp: now,
    exp.UtcTimestamp: now,
    exp.CurrentDate: today,
    exp.UtcDate: today,
    exp.Cast: cast,
    exp.Interval: interval,
}
"""Leaf node type → its check."""
