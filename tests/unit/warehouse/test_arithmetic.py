"""The arithmetic rewrites of user SQL (:mod:`personify.warehouse.arithmetic`) as SQL: what is
rewritten, what is left as written, and that checking twice changes nothing more. That both
engines then agree is tested on the real ones (tests/conformance/test_audience_segments.py)."""

from __future__ import annotations

import pytest

from personify.warehouse.safety import check_select


def checked(sql: str, dialect: str = "duckdb") -> str:
    return check_select(sql, dialect=dialect, allowed={"customers"}).sql("duckdb")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a / b, a % b, a // b FROM customers", "a / NULLIF(b, 0)"),
        ("SELECT a / 2 FROM customers", "a / 2"),  # a literal other than 0: no guard
        ("SELECT a / 0.0 FROM customers", "a / NULLIF(0.0, 0)"),
        ("SELECT ROUND(a, n) FROM customers", "ROUND(a, n)"),  # not a literal: as written
        ("SELECT ROUND(a) FROM customers", "TRUNC((a)) + SIGN((a))"),
        ("SELECT AVG(a) FROM customers", "CAST(AVG(a) AS DOUBLE)"),
    ],
)
def test_rewrites(sql: str, expected: str) -> None:
    assert expected in checked(sql)


def test_checking_twice_rewrites_nothing_more() -> None:
    sql = "SELECT ROUND(AVG(a) / b, 2), a % b FROM customers"
    once = checked(sql)
    assert checked(once) == once
