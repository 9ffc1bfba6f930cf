"""One answer on every engine for the arithmetic of user SQL (segments, rules' SQL, traits,
``personify sql``): what DuckDB and PostgreSQL compute differently, rewritten into expressions
both compute alike.

- **A zero divisor gives NULL** — for ``/``, ``//`` / ``DIV`` and ``%`` / ``MOD``: PostgreSQL
  fails the whole query ("division by zero"), DuckDB 2 gives ``inf``/``nan`` for ``/`` and fails
  for ``%``. A segment is a filter over many customers: one customer with no orders must not
  fail the refresh of all the others, nor (``inf``) pass every ``>`` test; NULL is unknown, so
  its row drops out of ``WHERE``, as with any missing value (and as in rules' expressions). The
  divisor becomes ``NULLIF(divisor, 0)``.
- **ROUND rounds half away from zero**, the value as stored: ``ROUND(2.5)`` is 3, ``ROUND(-2.5)``
  -3, ``ROUND(0.125, 2)`` 0.13 of a DECIMAL — DuckDB's rule, and PostgreSQL's for NUMERIC, but
  PostgreSQL rounds a DOUBLE PRECISION half to even (2.5 → 2) and only a NUMERIC to decimals
  (through 15 significant digits), and DuckDB's own ``ROUND(x, 2)`` of a DOUBLE 2.675 is 2.67.
  ``ROUND(x, n)`` with ``n`` an integer literal becomes ``r(x * 10^n) / 10^n`` (``n`` < 0:
  ``r(x / 10^-n) * 10^-n``), where ``r(v) = TRUNC(v) + SIGN(v) * FLOOR(2 * ABS(v - TRUNC(v)))``:
  operations both engines compute exactly (on DECIMALs) or IEEE-identically (on DOUBLEs): a
  DOUBLE 2.675 times 100 is 267.5, and rounds to 2.68 on both.
  ``x`` is written once in the rewrite when it holds a subquery (its cost, not four times that):
  ``ROUND((SELECT AVG(total) FROM orders …), 2)`` rounds inside the subquery, and any other
  ``x`` with a subquery is left as each engine rounds it.
  ``ROUND`` of an integer (``n`` ≥ 0, typed from the schema) is the integer itself, still an
  integer (PostgreSQL's ``round(bigint)`` is a DOUBLE: 3.0). ``ROUND`` of a DECIMAL (a literal
  ``n``; a cast to DECIMAL, or a DECIMAL made of such and integers, without ``/`` or ``AVG``)
  is left as written, and stays a DECIMAL: both engines round one exactly, half away from
  zero. A ``relations:`` column, whose type is not known when the query is checked, is
  rounded by the rewrite: a DOUBLE on both.
- **``//`` and ``DIV`` are a BIGINT**, the quotient truncated toward zero (-7 // 2 is -3):
  DuckDB's ``//`` of a DOUBLE or a DECIMAL is a true division (2.5 // 2 is 1.25), PostgreSQL's
  ``DIV`` a NUMERIC, and of a DOUBLE no function. Of integers ``CAST(a // b AS BIGINT)``;
  else ``CAST(TRUNC(a / b) AS BIGINT)``, ``/`` dividing as DOUBLEs on both.
- **AVG is a DOUBLE**: DuckDB's ``avg`` of integers and decimals is a DOUBLE, PostgreSQL's a
  NUMERIC, which then rounds as a decimal (``CAST(AVG(x) AS INT)`` of 2.5 is 3 as a NUMERIC, 2
  as a DOUBLE on both engines): an average of numbers is cast to DOUBLE — the types read from
  the schema (:func:`~personify.warehouse.division.annotated`), or for a ``relations:`` column
  (which the schema does not type) from the warehouse's catalog when the query is rendered
  (:func:`~personify.warehouse.division.catalog_typed`); an average of intervals (``AVG(
  last_seen - created_at)``), or of what neither types, is left as written.

Left as the engines do it (the same on both): ``%`` of negatives (the dividend's sign: -7 % 3
is -1), ``SUM`` of integers (no overflow: a BIGINT sum is a HUGEINT on DuckDB, a NUMERIC on
PostgreSQL), overflowing ``+``/``*`` of BIGINTs (an error on both).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from personify.warehouse.division import UNTYPED_AVG, annotated, as_double


def portable(query: exp.Query, dialect: str) -> exp.Query:
    """``query`` with its divisions, ``ROUND``s and ``AVG``s rewritten (in place) to give one
    answer on every engine. Run after :func:`~personify.warehouse.division.type_divisions`:
    a divisor's annotated type is kept on the ``NULLIF`` that wraps it."""
    for node in list(query.find_all(exp.Div, exp.IntDiv, exp.Mod)):
        _null_for_zero(node)
    _whole_quotients(query, dialect)
    integers, decimals = _rounds_kept(query, dialect)
    for rounding in decimals:  # (each engine's own ROUND of a DECIMAL: the same DECIMAL)
        rounding.meta[EXACT] = True
    kept = {id(r) for r in (*integers, *decimals)}
    numbers, untyped = _averages(query, dialect)
    for avg in numbers:  # (AVG(x) FILTER (WHERE …) OVER (…): cast as a whole)
        as_double(avg)
    for avg in untyped:  # (a relations: column: typed from the catalog when it runs)
        avg.meta[UNTYPED_AVG] = dialect
    # innermost first (a descendant comes after its ancestor depth-first): ROUND(ROUND(x, 2))
    for rounding in reversed(list(query.find_all(exp.Round, bfs=False))):
        if id(rounding) in kept:
            if rounding.meta.get(EXACT):
                continue
            # ROUND(an integer, n ≥ 0) is the integer: DuckDB's is, PostgreSQL's a DOUBLE or a
            # NUMERIC (round(bigint) is round(double precision): 3.0)
            rounding.replace(exp.paren(rounding.this.copy(), copy=False))
            continue
        rounded = _half_away(rounding)
        if rounded is not None:
            rounding.replace(rounded)
    return query


EXACT = "exact_round"
"""The meta key marking a ``ROUND`` of a DECIMAL left as written: a backend that would round it
as something else (PostgreSQL's of a DOUBLE, through NUMERIC) leaves it as it is."""


def _null_for_zero(node: exp.Expr) -> None:
    divisor = node.expression
    if isinstance(divisor, exp.Nullif):
        return
    if isinstance(divisor, exp.Literal) and divisor.is_number and float(divisor.name) != 0:
        return  # (a literal other than 0: nothing to guard)
    kept = divisor.type
    guarded = exp.Nullif(this=divisor.copy(), expression=exp.Literal.number(0))
    if kept is not None:
        guarded.type = kept  # (a typed division stays one: PostgreSQL's 3 / 2 is 1 on DuckDB)
    node.set("expression", guarded)


def _whole_quotients(query: exp.Query, dialect: str) -> None:
    """``a // b`` (``DIV``) as a BIGINT, the quotient truncated toward zero, on every engine:
    DuckDB's ``//`` of integers is one (-7 // 2 is -3), but of a DOUBLE or a DECIMAL it is a
    true division (2.5 // 2 is 1.25), and PostgreSQL's ``DIV`` is a NUMERIC, of DOUBLEs none
    at all. Of integers (typed from the schema) ``CAST(a // b AS BIGINT)``, exact; of anything
    else ``CAST(TRUNC(a / b) AS BIGINT)``, ``/`` dividing as DOUBLEs on both engines."""
    every = list(query.find_all(exp.IntDiv))
    if not every:
        return
    copy = annotated(query, dialect)
    known = list(copy.find_all(exp.IntDiv)) if copy is not None else []
    integers = exp.DataType.INTEGER_TYPES
    whole = set()
    if len(known) == len(every):
        whole = {
            id(mine)
            for mine, typed in zip(every, known, strict=True)
            if all(
                o.type is not None and o.type.is_type(*integers) for o in (typed.left, typed.right)
            )
        }
    bigint = exp.DataType.build("BIGINT")
    for division in every:
        # a BIGINT already (checked twice, or written so): CAST(a // b AS BIGINT) of integers
        # is exact as it is; of anything else its // is still DuckDB's true division (2.5 // 2
        # cast is 1.25 rounded: 1, 7.5 // 2 gives 4) and PostgreSQL's DIV, refused for DOUBLEs
        cast = isinstance(division.parent, exp.Cast) and division.parent.to.is_type(
            exp.DataType.Type.BIGINT
        )
        if id(division) in whole:
            if not cast:
                division.replace(exp.cast(division.copy(), bigint.copy()))
            continue
        true = exp.Div(this=division.left.copy(), expression=division.right.copy())
        quotient: exp.Expr = exp.func("TRUNC", true)
        division.replace(quotient if cast else exp.cast(quotient, bigint.copy()))


def _matched(query: exp.Query, dialect: str, kind: type[exp.Func]) -> list[tuple[Any, Any]]:
    """The query's ``kind`` calls (``AVG``, ``ROUND``), each with its copy on an annotated copy
    of the query (:func:`annotated`, matched by position); none when sqlglot cannot type the
    query (left as written)."""
    calls = list(query.find_all(kind))
    if not calls:
        return []
    copy = annotated(query, dialect)
    known = list(copy.find_all(kind)) if copy is not None else []
    if len(known) != len(calls):
        return []
    return list(zip(calls, known, strict=True))


def _averages(query: exp.Query, dialect: str) -> tuple[list[exp.Avg], list[exp.Avg]]:
    """The query's ``AVG``s whose argument the schema types as a number (an AVG of an interval
    cast to DOUBLE fails on both engines), and those whose argument it does not type."""
    numbers: list[exp.Avg] = []
    untyped: list[exp.Avg] = []
    for mine, typed in _matched(query, dialect, exp.Avg):
        kind = typed.this.type
        if kind is None or kind.is_type(exp.DataType.Type.UNKNOWN):
            untyped.append(mine)
        elif kind.is_type(*exp.DataType.NUMERIC_TYPES):
            numbers.append(mine)
    return numbers, untyped


def _rounds_kept(query: exp.Query, dialect: str) -> tuple[list[exp.Round], list[exp.Round]]:
    """The query's ``ROUND``s both engines already round alike, whose type a rewrite would
    lose: of an integer (``n`` ≥ 0), and of a DECIMAL (a literal ``n``: DuckDB and PostgreSQL
    both round a DECIMAL exactly, half away from zero, to a DECIMAL — ``ROUND(price, 2)`` stays
    19.99, not a DOUBLE near it)."""
    integers: list[exp.Round] = []
    decimals: list[exp.Round] = []
    for mine, typed in _matched(query, dialect, exp.Round):
        n = _decimals(mine)
        kind = typed.this.type
        if n is None or kind is None:
            continue
        if n >= 0 and kind.is_type(*exp.DataType.INTEGER_TYPES):
            integers.append(mine)
        elif _surely_decimal(typed.this):
            decimals.append(mine)
    return integers, decimals


_DECIMALS = exp.DataType.REAL_TYPES - exp.DataType.FLOAT_TYPES - {exp.DataType.Type.UDOUBLE}


def _surely_decimal(x: exp.Expr) -> bool:
    """Whether ``x`` (annotated) is a DECIMAL on both engines, not only in sqlglot's typing
    (which says DECIMAL of ``d / 2`` and ``d + a_double``, DOUBLEs on both): a cast to DECIMAL,
    or a DECIMAL made of such, DECIMAL columns, integers and decimal literals (``0.5``: a
    DECIMAL on both engines), by neither a division nor an ``AVG`` (DOUBLEs on DuckDB)."""
    if x.type is None or not x.type.is_type(*_DECIMALS):
        return False
    return _decimal_parts(x)


def _decimal_parts(node: exp.Expr) -> bool:
    if isinstance(node, exp.Cast):
        return node.to.is_type(*_DECIMALS, *exp.DataType.INTEGER_TYPES)
    if isinstance(node, exp.Literal):
        return node.is_number and "e" not in node.name.lower()
    if isinstance(node, exp.Div | exp.Avg | exp.Query):
        return False
    kind = node.type
    if kind is not None and kind.is_type(*exp.DataType.FLOAT_TYPES, exp.DataType.Type.UDOUBLE):
        return False
    return all(_decimal_parts(child) for child in node.iter_expressions())


def _decimals(node: exp.Round) -> int | None:
    """The literal number of decimals of ``ROUND(x, n)`` (0 without one); None otherwise."""
    n = node.args.get("decimals")
    if n is None:
        return 0
    negative = isinstance(n, exp.Neg)
    literal = n.this if negative else n
    if not (isinstance(literal, exp.Literal) and literal.is_int):
        return None
    value = int(literal.name)
    return -value if negative else value


def _half_away(node: exp.Round) -> exp.Expr | None:
    """``ROUND(x, n)`` rounding half away from zero on every engine; None when ``n`` is not an
    integer literal (left as written)."""
    n = _decimals(node)
    if n is None or abs(n) > 18 or isinstance(node.this, exp.Null):
        return None
    if node.this.find(exp.Query) is not None:
        return _inside(node.this, n)
    x = exp.paren(node.this.copy(), copy=False)
    scale = exp.Literal.number(10 ** abs(n))
    if n > 0:
        scaled: exp.Expr = exp.paren(exp.Mul(this=x, expression=scale), copy=False)
    elif n < 0:
        scaled = exp.paren(exp.Div(this=x, expression=scale), copy=False)
    else:
        scaled = x
    rounded = _round_half_away(scaled)
    if n > 0:
        return exp.paren(exp.Div(this=rounded, expression=scale.copy()), copy=False)
    if n < 0:
        return exp.paren(exp.Mul(this=rounded, expression=scale.copy()), copy=False)
    return rounded


def _inside(x: exp.Expr, n: int) -> exp.Expr | None:
    """``ROUND((SELECT v FROM …), n)`` as ``(SELECT <v rounded> FROM …)``: the rewrite writes
    ``x`` four times, which for a subquery is four subqueries run (a segment over a million
    customers took four times as long). None (left as written) for another ``x`` holding one."""
    while isinstance(x, exp.Paren):
        x = x.this
    if not (isinstance(x, exp.Subquery) and isinstance(x.this, exp.Select)):
        return None
    select = x.this
    if len(select.expressions) != 1 or select.args.get("distinct"):
        return None  # (rounding before DISTINCT could make two rows one)
    value = select.expressions[0]
    inner = value.this if isinstance(value, exp.Alias) else value
    if isinstance(inner, exp.Star) or (
        isinstance(value, exp.Alias) and value.alias.lower() in _names_read(select)
    ):
        return None  # (its name read in the subquery, by ORDER BY or HAVING: as written)
    decimals = exp.Literal.number(n) if n else None
    rounded = _half_away(exp.Round(this=inner.copy(), decimals=decimals))
    if rounded is None:
        return None
    inner.replace(rounded)
    return x.copy()


def _names_read(select: exp.Select) -> set[str]:
    """The column names ``select`` reads outside its projection (lower-cased)."""
    names: set[str] = set()
    for key, arg in select.args.items():
        if key == "expressions":
            continue
        for node in arg if isinstance(arg, list) else [arg]:
            if isinstance(node, exp.Expr):
                names |= {c.name.lower() for c in node.find_all(exp.Column)}
    return names


def _round_half_away(v: exp.Expr) -> exp.Expr:
    """``TRUNC(v) + SIGN(v) * FLOOR(2 * ABS(v - TRUNC(v)))``: the whole part, plus one away from
    zero when the fraction is at least a half (``v - TRUNC(v)`` and the doubling are exact)."""
    whole = exp.func("TRUNC", v.copy())
    fraction = exp.Sub(this=v.copy(), expression=whole.copy())
    doubled = exp.Mul(this=exp.Literal.number(2), expression=exp.func("ABS", fraction))
    step = exp.Mul(this=exp.func("SIGN", v.copy()), expression=exp.func("FLOOR", doubled))
    return exp.paren(exp.Add(this=whole, expression=step), copy=False)
