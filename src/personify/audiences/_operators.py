"""Checking the operators and functions of a rule expression (see :mod:`.expressions`)."""

from __future__ import annotations

from sqlglot import exp

from personify.audiences import _leaves as leaves
from personify.audiences._kinds import (
    BIGINT,
    DOUBLE,
    TIMESTAMPTZ,
    Checker,
    ExpressionError,
    Handler,
    Kind,
    Typed,
)

_COMPARISONS: tuple[type[exp.Expr], ...] = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
_ORDERED: tuple[type[exp.Expr], ...] = (exp.LT, exp.LTE, exp.GT, exp.GTE)
_TEMPORAL = (Kind.TS, Kind.DATE)


def promote(typed: Typed) -> Typed:
    """A DATE as the UTC midnight TIMESTAMPTZ it stands for (other kinds unchanged)."""
    if typed.kind == Kind.DATE:
        return Typed(exp.cast(typed.node, TIMESTAMPTZ), Kind.TS)
    return typed


def _coerce_text(typed: Typed, target: Kind) -> Typed:
    """A string literal met by a date or timestamp is read as one."""
    node = typed.node
    if typed.kind != Kind.TEXT or not (isinstance(node, exp.Literal) and node.is_string):
        return typed
    return leaves.timestamp_literal(node) if target == Kind.TS else leaves.date_literal(node)


def unify(
    items: list[Typed], *, node: exp.Expr, what: str, ordered: bool
) -> tuple[list[Typed], Kind]:
    """Make ``items`` one kind (dates → timestamps, string literals → dates/timestamps) or raise."""
    kinds = {t.kind for t in items} - {Kind.NULL}
    temporal = [k for k in _TEMPORAL if k in kinds]
    if temporal:
        items = [_coerce_text(t, temporal[0]) for t in items]
        kinds = {t.kind for t in items} - {Kind.NULL}
    if {Kind.TS, Kind.DATE} <= kinds:
        items = [promote(t) for t in items]
        kinds = {t.kind for t in items} - {Kind.NULL}
    if len(kinds) > 1:
        names = " and ".join(sorted(k.value for k in kinds))
        raise ExpressionError(f"{what} cannot mix {names}", node)
    kind = kinds.pop() if kinds else Kind.NULL
    if kind == Kind.INTERVAL:
        raise ExpressionError(f"{what} cannot take an interval alone", node)
    if ordered and kind in (Kind.TEXT, Kind.BOOL, Kind.JSON):
        raise ExpressionError(
            f"{what} cannot order {kind.value} values",
            node,
            "compare text with =, <>, IN or LIKE (engines sort text by different collations)",
        )
    return items, kind


# ------------------------------------------------------------------------------ operators
def paren(c: Checker, node: exp.Expr) -> Typed:
    inner = c.check(node.this)
    return Typed(exp.paren(inner.node, copy=False), inner.kind)


def neg(c: Checker, node: exp.Expr) -> Typed:
    inner = c.kinds(node.this, Kind.NUM, what="unary minus")
    if isinstance(inner.node, exp.Literal):  # -5 is the literal -5
        text = str(inner.node.this)
        return Typed(exp.Literal.number(text[1:] if text[0] == "-" else f"-{text}"), Kind.NUM)
    return Typed(exp.Neg(this=inner.node), Kind.NUM)


def _int32(node: exp.Expr) -> bool:
    """Whether the engines type ``node`` as a 32-bit integer (integer literals and what is
    built only from them), which overflows where Python's integers do not."""
    if isinstance(node, exp.Literal):
        return not node.is_string and str(node.this).lstrip("-").isdigit()
    if isinstance(node, exp.Paren | exp.Neg | exp.Abs | exp.Floor | exp.Ceil):
        return _int32(node.this)
    if isinstance(node, exp.Coalesce | exp.Greatest | exp.Least):
        return all(_int32(e) for e in (node.this, *node.expressions))
    if isinstance(node, exp.Case):
        values = [i.args["true"] for i in node.args.get("ifs") or []]
        values.append(node.args.get("default") or exp.null())
        return all(isinstance(v, exp.Null) or _int32(v) for v in values)
    return False


def arithmetic(c: Checker, node: exp.Expr) -> Typed:
    left, right = c.check(node.this), c.check(node.expression)
    cls = type(node)
    numbers = {Kind.NUM, Kind.NULL}
    if left.kind in numbers and right.kind in numbers:
        if cls is exp.Div:  # float division; NULL for a zero divisor, as in Python
            divisor = exp.Nullif(
                this=exp.cast(right.node, DOUBLE), expression=exp.Literal.number(0)
            )
            return Typed(exp.Div(this=exp.cast(left.node, DOUBLE), expression=divisor), Kind.NUM)
        first = left.node
        if _int32(first) and _int32(right.node):  # in BIGINT: Python's integers do not overflow
            first = exp.cast(first, BIGINT)
        return Typed(cls(this=first, expression=right.node), Kind.NUM)
    if cls in (exp.Add, exp.Sub) and left.kind in _TEMPORAL and right.kind == Kind.INTERVAL:
        return Typed(cls(this=promote(left).node, expression=right.node), Kind.TS)
    if cls is exp.Add and left.kind == Kind.INTERVAL and right.kind in _TEMPORAL:
        return Typed(exp.Add(this=promote(right).node, expression=left.node), Kind.TS)
    raise ExpressionError(
        f"cannot apply {node.key.upper()} to {left.kind.value} and {right.kind.value}",
        node,
        "numbers combine with + - * /; a date or timestamp takes + or - INTERVAL n UNIT",
    )


def comparison(c: Checker, node: exp.Expr) -> Typed:
    what = f"the comparison {node.sql()}"
    items, kind = unify(
        [c.check(node.this), c.check(node.expression)],
        node=node,
        what=what,
        ordered=isinstance(node, _ORDERED),
    )
    if kind == Kind.JSON:
        raise ExpressionError(f"{what} cannot compare JSON values", node, "use JSON_ARRAY_LENGTH")
    return Typed(type(node)(this=items[0].node, expression=items[1].node), Kind.BOOL)


def logical(c: Checker, node: exp.Expr) -> Typed:
    left = c.kinds(node.this, Kind.BOOL, what=node.key.upper())
    right = c.kinds(node.expression, Kind.BOOL, what=node.key.upper())
    return Typed(type(node)(this=left.node, expression=right.node), Kind.BOOL)


def not_(c: Checker, node: exp.Expr) -> Typed:
    inner = c.kinds(node.this, Kind.BOOL, what="NOT")
    return Typed(exp.Not(this=inner.node), Kind.BOOL)


def is_(c: Checker, node: exp.Expr) -> Typed:
    target = node.expression
    if isinstance(target, exp.Null):
        return Typed(exp.Is(this=c.check(node.this).node, expression=exp.null()), Kind.BOOL)
    if isinstance(target, exp.Boolean):
        inner = c.kinds(node.this, Kind.BOOL, what="IS TRUE / IS FALSE")
        return Typed(exp.Is(this=inner.node, expression=target.copy()), Kind.BOOL)
    raise ExpressionError(f"{node.sql()} is not allowed", node, "use IS NULL, IS TRUE or IS FALSE")


def in_(c: Checker, node: exp.Expr) -> Typed:
    inner = node.args.get("query") or node.args.get("unnest") or node.args.get("field")
    if inner is not None:
        raise ExpressionError("a subquery is not allowed here", inner, "list the values: IN (1, 2)")
    typed = [c.check(node.this), *(c.check(e) for e in node.expressions)]
    items, kind = unify(typed, node=node, what="IN", ordered=False)
    if kind == Kind.JSON:
        raise ExpressionError("IN cannot compare JSON values", node)
    head, *rest = (t.node for t in items)
    return Typed(exp.In(this=head, expressions=rest), Kind.BOOL)


def between(c: Checker, node: exp.Expr) -> Typed:
    typed = [c.check(node.this), c.check(node.args["low"]), c.check(node.args["high"])]
    items, _ = unify(typed, node=node, what="BETWEEN", ordered=True)
    this, low, high = (t.node for t in items)
    return Typed(exp.Between(this=this, low=low, high=high), Kind.BOOL)


def like(c: Checker, node: exp.Expr) -> Typed:
    this = c.kinds(node.this, Kind.TEXT, what="LIKE")
    pattern = node.expression
    if node.args.get("escape") or not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise ExpressionError("LIKE takes a string literal pattern (without ESCAPE)", node)
    if "\\" in pattern.this:
        raise ExpressionError(
            "LIKE patterns may not contain a backslash", pattern, "engines escape it differently"
        )
    out: exp.Expr = exp.Like(this=this.node, expression=exp.Literal.string(pattern.this))
    if node.args.get("negate"):
        out = exp.Not(this=out)
    return Typed(out, Kind.BOOL)


# ------------------------------------------------------------------------------ functions
def coalesce(c: Checker, node: exp.Expr) -> Typed:
    typed = [c.check(node.this), *(c.check(e) for e in node.expressions)]
    items, kind = unify(typed, node=node, what="COALESCE", ordered=False)
    head, *rest = (t.node for t in items)
    return Typed(exp.Coalesce(this=head, expressions=rest), kind)


def _name(node: exp.Expr) -> str:
    return node.sql_name() if isinstance(node, exp.Func) else node.key.upper()


def numeric(c: Checker, node: exp.Expr) -> Typed:
    if any(v for k, v in node.args.items() if k != "this"):
        raise ExpressionError(f"{_name(node)}() takes one argument here", node)
    inner = c.kinds(node.this, Kind.NUM, what=f"{_name(node)}()")
    return Typed(type(node)(this=inner.node), Kind.NUM)


def extreme(c: Checker, node: exp.Expr) -> Typed:
    typed = [c.check(node.this), *(c.check(e) for e in node.expressions)]
    what = f"{_name(node)}()"
    items, kind = unify(typed, node=node, what=what, ordered=True)
    head, *rest = (t.node for t in items)
    return Typed(type(node)(this=head, expressions=rest, ignore_nulls=True), kind)


def case(c: Checker, node: exp.Expr) -> Typed:
    if node.args.get("this") is not None:
        raise ExpressionError("CASE x WHEN … is not allowed", node, "write CASE WHEN x = … THEN")
    pairs = node.args.get("ifs") or []
    conditions = [c.kinds(p.this, Kind.BOOL, what="CASE WHEN") for p in pairs]
    values = [c.check(p.args["true"]) for p in pairs]
    default = node.args.get("default")
    values.append(c.check(default) if default is not None else Typed(exp.null(), Kind.NULL))
    items, kind = unify(values, node=node, what="CASE", ordered=False)
    out = exp.Case()
    for cond, value in zip(conditions, items, strict=False):
        out = out.when(cond.node, value.node, copy=False)
    return Typed(out.else_(items[-1].node, copy=False), kind)


def if_(c: Checker, node: exp.Expr) -> Typed:
    false = node.args.get("false")
    return _if(c, node, node.this, node.args["true"], false)


def _if(
    c: Checker, node: exp.Expr, cond: exp.Expr, true: exp.Expr, false: exp.Expr | None
) -> Typed:
    as_case = exp.Case(ifs=[exp.If(this=cond, true=true)], default=false)
    return case(c, as_case)


def anonymous(c: Checker, node: exp.Expr) -> Typed:
    name = node.name.lower()
    args = node.expressions
    if name in leaves.NOW_NAMES and not args:
        return leaves.now(c, node)
    if name == "iff" and len(args) == 3:
        return _if(c, node, args[0], args[1], args[2])
    if name == "json_array_length" and len(args) == 1:
        inner = c.kinds(args[0], Kind.JSON, what="JSON_ARRAY_LENGTH()")
        length = exp.Anonymous(this="JSON_ARRAY_LENGTH", expressions=[inner.node])
        return Typed(exp.cast(length, BIGINT), Kind.NUM)  # DuckDB: UBIGINT; PostgreSQL: INT
    raise ExpressionError(
        f"function {node.name.upper()}() is not allowed here",
        node,
        "allowed functions: COALESCE, ABS, FLOOR, CEIL, GREATEST, LEAST, IF/IFF, "
        "JSON_ARRAY_LENGTH, NOW, CURRENT_DATE",
    )


HANDLERS: dict[type[exp.Expr], Handler] = {
    exp.Paren: paren,
    exp.Neg: neg,
    **dict.fromkeys((exp.Add, exp.Sub, exp.Mul, exp.Div), arithmetic),
    **dict.fromkeys(_COMPARISONS, comparison),
    **dict.fromkeys((exp.And, exp.Or), logical),
    exp.Not: not_,
    exp.Is: is_,
    exp.In: in_,
    exp.Between: between,
    exp.Like: like,
    exp.Coalesce: coalesce,
    **dict.fromkeys((exp.Abs, exp.Floor, exp.Ceil), numeric),
    **dict.fromkeys((exp.Greatest, exp.Least), extreme),
    exp.Case: case,
    exp.If: if_,
    exp.Anonymous: anonymous,
}
"""Operator / function node type → its check."""
