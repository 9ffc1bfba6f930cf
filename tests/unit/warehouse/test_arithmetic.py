"""The arithmetic rewrites of user SQL (:mod:`personify.warehouse.arithmetic`) as SQL: what is
rewritten, what is left as written, and that checking twice changes nothing more. That both
engines then agree is tested on the real ones (tests/conformance/test_audience_segments.py)."""

from __future__ import annotations

import pytest
from sqlglot import exp

from personify.warehouse.safety import check_select


def checked(sql: str, dialect: str = "duckdb") -> str:
    return check_select(sql, dialect=dialect, allowed={"customers", "orders"}).sql("duckdb")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a / b, a % b, a // b FROM customers", "a / NULLIF(b, 0)"),
        ("SELECT a / 2 FROM customers", "a / 2"),  # a literal other than 0: no guard
        ("SELECT a / 0.0 FROM customers", "a / NULLIF(0.0, 0)"),
        ("SELECT ROUND(a, n) FROM customers", "ROUND(a, n)"),  # not a literal: as written
        ("SELECT ROUND(a) FROM customers", "TRUNC((a)) + SIGN((a))"),
        # an integer: nothing to round, the integer itself (a trait read 3.0 once rewritten,
        # and PostgreSQL's round(bigint) is a DOUBLE)
        (
            "SELECT ROUND(order_count), ROUND(order_count, 2) FROM customers",
            "SELECT (order_count), (order_count) FROM",
        ),
        ("SELECT ROUND(order_count, -1) FROM customers", "TRUNC(((order_count) / 10))"),
        ("SELECT ROUND(total_spent) FROM customers", "TRUNC((total_spent))"),
        ("SELECT AVG(order_count) FROM customers", "CAST(AVG(order_count) AS DOUBLE)"),
        # an average of intervals cast to DOUBLE fails on both engines: as written
        ("SELECT AVG(last_seen - created_at) FROM customers", "SELECT AVG(last_seen - created_at)"),
        ("SELECT AVG(a) FROM customers", "SELECT AVG(a) FROM"),  # a type the schema does not say
        # a subquery is written once: rounded inside it, or left as the engine rounds it
        ("SELECT ROUND((SELECT AVG(total) FROM orders), 2)", "SELECT (SELECT ((TRUNC((("),
        ("SELECT ROUND((SELECT MAX(total) FROM orders) + 1)", "ROUND((SELECT MAX(total)"),
        # (its alias read by the subquery's HAVING: rounding inside would change what it reads)
        (
            "SELECT ROUND((SELECT AVG(total) AS a FROM orders GROUP BY customer_id "
            "HAVING a > 1 LIMIT 1), 2)",
            "SELECT ROUND((SELECT ",
        ),
    ],
)
def test_rewrites(sql: str, expected: str) -> None:
    assert expected in checked(sql)


def test_a_rounded_subquery_is_run_once() -> None:
    # (written four times, a correlated subquery over a million customers ran four times)
    sql = (
        "SELECT customer_id FROM customers c WHERE ROUND(ROUND((SELECT SUM(o.total) FROM orders o "
        "WHERE o.customer_id = c.customer_id), 2), 1) > 420"
    )
    query = check_select(sql, dialect="duckdb", allowed={"customers", "orders"})
    assert len(list(query.find_all(exp.Select))) == 2
    assert "ROUND" not in query.sql("duckdb")


def test_checking_twice_rewrites_nothing_more() -> None:
    sql = "SELECT ROUND(AVG(a) / b, 2), a % b FROM customers"
    once = checked(sql)
    assert checked(once) == once


@pytest.mark.parametrize(
    ("sql", "dialect", "expected"),
    [
        # // of integers: exact, a BIGINT on both (PostgreSQL's DIV is a NUMERIC)
        ("SELECT order_count // open_tickets FROM customers", "duckdb", "CAST(order_count //"),
        # of anything else: truncated from a DOUBLE (DuckDB's // of a DOUBLE divided: 1.25)
        (
            "SELECT engagement_score // 2 FROM customers",
            "duckdb",
            "CAST(TRUNC(engagement_score / 2) AS BIGINT)",
        ),
        ("SELECT a DIV b FROM customers", "mysql", "CAST(TRUNC(a / NULLIF(b, 0)) AS BIGINT)"),
        # … also when the query casts it to a BIGINT itself (DuckDB's // of a DOUBLE divides)
        (
            "SELECT CAST(engagement_score // 2 AS BIGINT) FROM customers",
            "duckdb",
            "SELECT CAST(TRUNC(engagement_score / 2) AS BIGINT) FROM",
        ),
        (
            "SELECT CAST(order_count // 2 AS BIGINT) FROM customers",
            "duckdb",
            "SELECT CAST(order_count // 2 AS BIGINT) FROM",
        ),
        # ROUND of a DECIMAL: each engine's own, a DECIMAL
        (
            "SELECT ROUND(CAST(a AS DECIMAL(10, 3)) * 2 + 1, 2) FROM customers",
            "duckdb",
            "SELECT ROUND(CAST(a AS DECIMAL(10, 3)) * 2 + 1, 2)",
        ),
        # … but not once divided or mixed with a DOUBLE (sqlglot calls those DECIMALs)
        ("SELECT ROUND(CAST(a AS DECIMAL(10, 3)) / 2, 2) FROM customers", "duckdb", "TRUNC("),
        (
            "SELECT ROUND(CAST(a AS DECIMAL(10, 3)) + total_spent, 2) FROM customers",
            "duckdb",
            "TRUNC(",
        ),
        # PostgreSQL's NUMERIC sum over a count divides as DOUBLEs, then rounds as one
        (
            "SELECT ROUND(SUM(order_count) / COUNT(*), 2) FROM customers",
            "postgres",
            "CAST(SUM(order_count) AS DOUBLE) / NULLIF(COUNT(*), 0)",
        ),
    ],
)
def test_quotients_and_decimals(sql: str, dialect: str, expected: str) -> None:
    assert expected in checked(sql, dialect)


def test_quotients_and_kept_rounds_are_checked_alike_twice() -> None:
    sql = (
        "SELECT order_count // 2, total_spent // 2, ROUND(CAST(a AS DECIMAL(9, 2)), 1), "
        "ROUND(order_count, 1), CAST(total_spent // 3 AS BIGINT) FROM customers"
    )
    once = checked(sql)
    assert once.count("CAST(") == 4 and "ROUND(order_count" not in once
    assert checked(once) == once
