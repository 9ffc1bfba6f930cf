"""MySQL's ``TIMESTAMPDIFF(unit, a, b)`` as MySQL means it, on every warehouse.

MySQL counts the *complete* units from ``a`` to ``b`` (12 hours are 0 days), where sqlglot
renders it as DuckDB's ``DATE_DIFF``, which counts the unit *boundaries* crossed (23:30 → 12:00
the next day is 1 day), and as a ``TIMESTAMPDIFF(b, a, DAY)`` PostgreSQL does not have.
:func:`complete_units` rewrites it, for the units of a fixed length (microsecond to week), into
the seconds between the two instants divided by the unit's and truncated toward zero, as MySQL
does — an expression both engines run alike.
"""

from __future__ import annotations

from sqlglot import exp

SECONDS = {
    "MICROSECOND": 0.000001,
    "SECOND": 1,
    "MINUTE": 60,
    "HOUR": 3600,
    "DAY": 86400,
    "WEEK": 604800,
}
"""The fixed-length units and their seconds (months and years are left as sqlglot renders them)."""


def complete_units(query: exp.Query, dialect: str) -> exp.Query:
    """``query`` (in ``dialect``) with MySQL's fixed-unit ``TIMESTAMPDIFF`` rewritten in place."""
    if dialect != "mysql":
        return query
    for node in list(query.find_all(exp.TimestampDiff)):
        unit = node.args.get("unit")
        seconds = SECONDS.get(unit.name.upper()) if unit is not None else None
        if seconds is None:
            continue

        def epoch(value: exp.Expr) -> exp.Expr:
            instant = exp.cast(value.copy(), exp.DataType.build("TIMESTAMPTZ"))
            return exp.TimeToUnix(this=instant)  # EPOCH(t) / DATE_PART('epoch', t)

        elapsed = exp.Sub(this=epoch(node.this), expression=epoch(node.expression))
        units = exp.Div(this=exp.paren(elapsed), expression=exp.Literal.number(seconds))
        truncated = exp.func("TRUNC", units)
        node.replace(exp.cast(truncated, exp.DataType.build("BIGINT")))
    return query
