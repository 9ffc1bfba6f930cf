"""Small SQL-text helpers any stage may use (authored in DuckDB's dialect, ``?`` params).

Each returns a fragment of internal SQL built only from names and numbers of ours — never a user
value — for :meth:`~personify.warehouse.base.Warehouse.render` to transpile like the rest.
"""

from __future__ import annotations

NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
"""Text that casts to a number safely (PostgreSQL has no ``TRY_CAST``)."""


def prop(name: str, alias: str = "e") -> str:
    """``alias.properties->>'name'`` (``name`` is one of ours, never a user value)."""
    return f"{alias}.properties->>'{name}'"


def numeric(expr: str, cast: str = "DOUBLE") -> str:
    """``expr`` (text) cast to ``cast`` when it looks like a number, else NULL."""
    return f"CASE WHEN regexp_matches({expr}, '{NUMBER}') THEN CAST({expr} AS {cast}) END"


def interval_days(days: int) -> str:
    """An interval literal of whole days (an int, never a user string)."""
    return f"INTERVAL '{int(days)} days'"
