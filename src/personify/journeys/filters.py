"""Event trigger filters: ``trigger: {event: Order Completed, where: "properties.total > 50"}``.

A filter is a rule expression (:mod:`personify.audiences.expressions`: the same allow-list,
types and normalization) over one event instead of one profile. It may read the event's
``event``, ``source`` and ``timestamp``, and fields inside its JSON — ``properties.total``,
``context.locale``, ``properties.shipping.country`` (``properties``, ``context`` or ``traits``,
then names). A JSON field takes the type of what it is compared with: a number
(``properties.total > 50``, ``BETWEEN 10 AND 20``, ``IN (1, 2)``) reads it as a number (text that
is no number: NULL, so the event does not enter), ``TRUE``/``FALSE`` as a boolean, anything else
as text. The result is SQL over the events alias ``e``, run by both the batch and the real-time
entry (one query: the same answer).
"""

from __future__ import annotations

import re
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from personify.audiences.expressions import ExpressionError, Kind, check_expression
from personify.warehouse.sqltext import numeric

JSON_COLUMNS: Final = ("properties", "context", "traits")
"""Event columns holding JSON objects a filter may reach into."""
EVENT_COLUMNS: Final = {"event": Kind.TEXT, "source": Kind.TEXT, "timestamp": Kind.TS}
"""The event's plain columns a filter may read."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMPARE = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_HINT = (
    "a filter reads event, source, timestamp and JSON fields: properties.total > 50, "
    "context.locale LIKE 'fr%', properties.shipping.country IN ('FR', 'BE')"
)


def json_path_sql(column: str, names: list[str], alias: str = "e") -> str:
    """``alias.column->>'$.a.b'``: the text at a path of names (checked: letters, digits, ``_``)."""
    return f"{alias}.{column}->>'$.{'.'.join(names)}'"


_TRIGGER_BOUND: Final = "the trigger's within: bounds how old an entering event may be"
WAIT_BOUND: Final = "the step's within: bounds how long the wait lasts"


def check_event_filter(text: str, *, bound: str = _TRIGGER_BOUND) -> str:
    """The filter ``text`` checked and compiled to DuckDB SQL over the events alias ``e``;
    ``bound``: the hint for a filter that reads the clock (what bounds the events' time instead).

    Raises :class:`ExpressionError` (with the line and column inside ``text``)."""
    try:
        parsed = sqlglot.parse_one(text, read="duckdb")
    except (ParseError, TokenError):
        # (check_expression says where)
        check_expression(text, dialect="duckdb", columns=EVENT_COLUMNS)
        raise
    paths: dict[str, tuple[str, list[str], Kind]] = {}
    for column in list(parsed.find_all(exp.Column)):
        parts = [p.name for p in column.parts]
        if len(parts) == 1:
            continue
        head, names = parts[0].lower(), parts[1:]
        if head not in JSON_COLUMNS or not all(_NAME.match(n) for n in names):
            raise ExpressionError(f"unknown event field {column.sql()!r}", column, _HINT).locate(
                text
            )
        placeholder = exp.column(f"json_field_{len(paths)}")
        paths[placeholder.name] = (head, names, _kind_beside(column))
        if column is parsed:
            parsed = placeholder
        else:
            column.replace(placeholder)
    columns = {**EVENT_COLUMNS, **{name: kind for name, (_, _, kind) in paths.items()}}
    try:
        checked = check_expression(parsed.sql(dialect="duckdb"), dialect="duckdb", columns=columns)
    except ExpressionError as e:
        message = e.message.replace("profile column", "event field")
        hint = e.hint if e.hint and e.hint.startswith("did you mean") else _HINT
        raise ExpressionError(message, hint=hint) from None
    if checked.kind not in (Kind.BOOL, Kind.NULL):
        raise ExpressionError(
            f"a filter must be a condition, not a {checked.kind.value}", hint=_HINT
        )
    if any(checked.tree.find_all(exp.CurrentTimestamp, exp.CurrentDate)):
        raise ExpressionError(
            "an event filter cannot read the clock",
            hint=bound,
        )
    tree = checked.tree.copy()
    for column in list(tree.find_all(exp.Column)):
        name = column.name
        if name in paths:
            head, names, kind = paths[name]
            column.replace(
                sqlglot.parse_one(_typed(json_path_sql(head, names), kind), read="duckdb")
            )
        else:
            column.replace(exp.column(name, table="e"))
    return tree.sql(dialect="duckdb")


def _kind_beside(column: exp.Column) -> Kind:
    """A JSON field's type: that of the literal it is compared with."""
    parent = column.parent
    if isinstance(parent, exp.Paren):
        parent = parent.parent
    other: exp.Expr | None = None
    if isinstance(parent, _COMPARE):
        other = parent.expression if parent.this is column else parent.this
    elif isinstance(parent, exp.In):
        other = parent.expressions[0] if parent.expressions else None
    elif isinstance(parent, exp.Between):
        other = parent.args.get("low")
    elif isinstance(parent, _ARITHMETIC):
        return Kind.NUM
    if isinstance(other, exp.Neg):
        other = other.this
    if isinstance(other, exp.Literal) and not other.is_string:
        return Kind.NUM
    if isinstance(other, exp.Boolean):
        return Kind.BOOL
    return Kind.TEXT


def _typed(text_sql: str, kind: Kind) -> str:
    if kind is Kind.NUM:
        return numeric(text_sql)
    if kind is Kind.BOOL:
        return f"CASE lower({text_sql}) WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END"
    return text_sql
