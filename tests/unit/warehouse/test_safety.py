"""The read-only guard refuses everything but one SELECT over allowed tables."""

from __future__ import annotations

import pytest

from personify.errors import UnsafeQueryError
from personify.warehouse.safety import check_select

ALLOWED = {"customers", "orders", "customer_data", "events"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM customers",
        "select c.email, count(o.order_id) from customers c left join orders o using (customer_id) "
        "group by 1 order by 2 desc limit 5",
        "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
        "SELECT email FROM customers UNION ALL SELECT user_id FROM events",
        "SELECT 1",
        "SELECT * FROM (SELECT customer_id FROM customer_data) AS sub",
    ],
)
def test_selects_pass(sql: str) -> None:
    check_select(sql, dialect="duckdb", allowed=ALLOWED)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE customers", "only SELECT"),
        ("DELETE FROM customers", "only SELECT"),
        ("UPDATE customers SET email = NULL", "only SELECT"),
        ("INSERT INTO customers SELECT * FROM customers", "only SELECT"),
        ("CREATE TABLE x AS SELECT 1", "only SELECT"),
        ("ATTACH 'other.db' AS o", "only SELECT"),
        ("COPY customers TO '/tmp/x.csv'", "only SELECT"),
        ("PRAGMA database_list", "only SELECT"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM read_csv_auto('/etc/passwd')", "read_csv_auto"),
        ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "read_parquet"),
        ("SELECT * FROM '/etc/passwd'", "unknown table"),
        ("SELECT * FROM glob('/etc/*')", "glob"),
        ("SELECT getenv('HOME')", "getenv"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT * FROM information_schema.tables", "qualified"),
        ("SELECT * FROM secrets", "unknown table"),
        ("SELECT * INTO newtable FROM customers", "not allowed"),
        ("", "empty"),
        ("SELEC * FROM customers", "cannot parse"),
    ],
)
def test_everything_else_is_refused(sql: str, message: str) -> None:
    with pytest.raises(UnsafeQueryError, match=message):
        check_select(sql, dialect="duckdb", allowed=ALLOWED)


def test_parse_errors_point_at_line_and_column() -> None:
    with pytest.raises(UnsafeQueryError) as info:
        check_select("SELECT email\nFROM customers WHERE (a = ", dialect="duckdb", allowed=ALLOWED)
    assert info.value.line == 2
    assert "line 2" in str(info.value)


def test_other_dialects_parse_before_checking() -> None:
    seed = (
        "SELECT customer_id, email, purchase_date, engagement_score FROM customer_data "
        "WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;"
    )
    query = check_select(seed, dialect="mysql", allowed=ALLOWED)
    assert "INTERVAL" in query.sql("duckdb")
    with pytest.raises(UnsafeQueryError):
        check_select("DELETE FROM `customers`", dialect="mysql", allowed=ALLOWED)


def test_a_misspelt_select_is_a_parse_error_not_another_statement() -> None:
    # sqlglot reads "SELEC broken" as the column SELEC aliased broken: not an ALIAS statement
    with pytest.raises(UnsafeQueryError) as info:
        check_select("-- note\n  SELEC broken", dialect="duckdb", allowed=ALLOWED, what="segment")
    assert "cannot parse the segment as duckdb SQL: 'SELEC' does not start a statement" in str(
        info.value
    )
    assert (info.value.line, info.value.col) == (2, 3)
    assert "ALIAS" not in str(info.value)


def test_an_unknown_dialect_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnsafeQueryError, match="Unknown dialect 'klingon'") as info:
        check_select("SELECT 1", dialect="klingon", allowed=ALLOWED)
    assert info.value.hint is not None and "postgres" in info.value.hint
