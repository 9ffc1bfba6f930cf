"""Segment files: the header, the checks, hostile SQL refused with file, line and column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from personify import clock
from personify.audiences.schedule import parse_duration, parse_refresh
from personify.audiences.segments import load_segments, one_row_per_customer, parse_segment
from personify.errors import DefinitionError

SEED = (
    "SELECT customer_id, email, purchase_date, engagement_score FROM customer_data WHERE "
    "purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;"
)


def parse(text: str, name: str = "seg.sql"):  # type: ignore[no-untyped-def]
    return parse_segment(text, file=Path(name), default_dialect="duckdb", shown=name)


def test_header_and_seed_query() -> None:
    segment = parse(
        "-- name: high_value\n-- description: Big spenders\n-- dialect: MySQL\n"
        "-- refresh: every 15m\n-- Free text is fine.\n" + SEED
    )
    assert (segment.name, segment.description, segment.dialect) == (
        "high_value",
        "Big spenders",
        "mysql",
    )
    assert str(segment.refresh) == "every 15m"
    with clock.frozen("2026-01-31T10:00:00Z"):
        sql = segment.members_query().sql("duckdb")
    assert "CAST('2026-01-31' AS DATE) - INTERVAL '30' DAY" in sql


def test_defaults_come_from_the_file_and_settings() -> None:
    segment = parse(
        "-- Shoppers from France\nSELECT customer_id FROM customers WHERE country = 'FR'"
    )
    assert segment.name == "seg"
    assert segment.description == "Shoppers from France"
    assert segment.dialect == "duckdb"
    assert str(segment.refresh) == "real-time"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("-- dialekt: mysql\nSELECT 1 AS customer_id", "unknown header key 'dialekt'", 1),
        ("-- dialect: cobol\nSELECT 1 AS customer_id", "unknown SQL dialect 'cobol'", 1),
        ("-- name: x\n-- refresh: sometimes\nSELECT 1 AS customer_id", "not a refresh", 2),
        ("-- name: bad name\nSELECT 1 AS customer_id", "not a valid segment name", 1),
        ("-- name: a\n-- name: b\nSELECT 1 AS customer_id", "given twice", 2),
        ("SELECT email FROM customers", "must return a customer_id column", None),
        ("-- header\n\nSELECT customer_id\nFROM customers WHERE (x = ", "cannot parse", 4),
        ("-- name: x\nSELEC broken", "'SELEC' does not start a statement", 2),
    ],
)
def test_header_mistakes_name_file_and_line(text: str, message: str, line: int | None) -> None:
    with pytest.raises(DefinitionError, match=message) as info:
        parse(text)
    assert info.value.file == "seg.sql"
    assert info.value.line == line


HOSTILE = [
    ("DROP TABLE customers", "only SELECT"),
    ("DELETE FROM customers", "only SELECT"),
    ("CREATE TABLE x AS SELECT customer_id FROM customers", "only SELECT"),
    ("SELECT customer_id FROM customers; DELETE FROM customers", "2 statements"),
    ("SELECT customer_id FROM customers;\nDROP TABLE customers;", "2 statements"),
    ("SELECT customer_id FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT customer_id FROM read_parquet('s3://bucket/x.parquet')", "read_parquet"),
    ("SELECT customer_id FROM '/etc/passwd'", "unknown table"),
    ("SELECT customer_id, read_text('/etc/passwd') FROM customers", "read_text"),
    ("SELECT customer_id FROM customers WHERE getenv('HOME') IS NOT NULL", "getenv"),
    ("SELECT customer_id, pg_read_file('/etc/passwd') FROM customers", "pg_read_file"),
    ("SELECT customer_id, nextval('s') FROM customers", "nextval"),
    ("SELECT customer_id FROM glob('/etc/*')", "glob"),
    ("SELECT customer_id FROM duckdb_tables()", "duckdb_tables"),
    ("SELECT customer_id FROM quarantine", "unknown table"),
    ("SELECT customer_id FROM pipeline_runs", "unknown table"),
    ("SELECT customer_id FROM information_schema.tables", "qualified"),
    ("SELECT customer_id FROM customers -- ; DROP TABLE customers", "hides a statement"),
    ("SELECT customer_id FROM customers /* DELETE FROM customers */", "hides a statement"),
    ("SELECT customer_id FROM customers\n-- ATTACH '/tmp/other.db'", "hides a statement"),
    ("SELECT customer_id /* a /* b */ DROP TABLE x; */ FROM customers", "hides a statement"),
]


@pytest.mark.parametrize(("sql", "message"), HOSTILE)
def test_hostile_segments_are_refused(sql: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        parse(sql)


def test_mysql_executable_comments_are_refused() -> None:
    with pytest.raises(DefinitionError, match="MySQL executable comment"):
        parse("-- dialect: mysql\nSELECT /*! DROP TABLE customers */ customer_id FROM customers")


def test_refusals_point_at_line_and_column() -> None:
    with pytest.raises(DefinitionError) as info:
        parse("-- name: x\nSELECT customer_id\nFROM customers, read_csv('/etc/passwd')")
    assert (info.value.line, info.value.col) == (3, 17)
    assert str(info.value).startswith("seg.sql:3: column 17: ")


def test_a_syntax_error_hints_at_the_dialect_header() -> None:
    # the file is read as DuckDB unless its header says otherwise: there is no --dialect to pass
    with pytest.raises(DefinitionError) as caught:
        parse("SELECT customer_id FROM customers\nWHERE order_count >> ")
    assert str(caught.value).startswith("seg.sql:2: column ")
    assert caught.value.hint is not None
    assert "-- dialect: mysql" in caught.value.hint and "--dialect " not in caught.value.hint
    assert "(now duckdb)" in caught.value.hint


def test_prose_comments_pass() -> None:
    segment = parse(
        "-- Update: changed the threshold\n-- Delete me later\n-- Set by marketing\n"
        "SELECT customer_id FROM customers /* customers who set a password */"
    )
    assert "Update" not in segment.members_query().sql("duckdb")  # comments never run


def test_load_segments_sorted_unique(tmp_path: Path) -> None:
    (tmp_path / "b.sql").write_text("SELECT customer_id FROM customers")
    (tmp_path / "a.sql").write_text("-- name: z\nSELECT customer_id FROM customers")
    (tmp_path / "notes.txt").write_text("ignored")
    names = [s.name for s in load_segments(tmp_path, default_dialect="duckdb")]
    assert names == ["b", "z"]
    (tmp_path / "c.sql").write_text("-- name: b\nSELECT customer_id FROM customers")
    with pytest.raises(DefinitionError, match="also defined in b.sql"):
        load_segments(tmp_path, default_dialect="duckdb")
    assert load_segments(tmp_path / "missing", default_dialect="duckdb") == []


def test_schedules() -> None:
    assert parse_duration("14d") == timedelta(days=14)
    assert parse_duration("36 hours") == timedelta(hours=36)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("0m")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    hourly = parse_refresh("hourly")
    assert str(hourly) == "every 1h"
    assert hourly.is_due(None, t)
    assert not hourly.is_due(t - timedelta(minutes=59), t)
    assert hourly.is_due(t - timedelta(minutes=60), t)
    assert hourly.is_due(t + timedelta(days=1), t)  # replayed in the past
    assert parse_refresh("real-time").is_due(t, t)
    assert not parse_refresh("manual").is_due(None, t)


@pytest.mark.parametrize(
    ("sql", "dialect", "unique"),
    [
        (SEED, "mysql", True),
        ("SELECT c.customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
         "WHERE o.customer_id = c.customer_id)", "mysql", True),
        ("SELECT * FROM customers WHERE country = 'FR'", "duckdb", True),
        ("SELECT c.*, 1 AS one FROM customer_data AS c LIMIT 10", "duckdb", True),
        ("SELECT customer_id AS customer_id FROM customers", "duckdb", True),
        ("SELECT customer_id FROM orders", "duckdb", False),
        ("SELECT customer_id FROM customers JOIN orders USING (customer_id)", "duckdb", False),
        ("SELECT customer_id FROM customers, orders", "duckdb", False),
        ("SELECT customer_id FROM customers CROSS JOIN UNNEST([1, 2])", "duckdb", False),
        ("SELECT customer_id, UNNEST([1, 2]) AS n FROM customers", "duckdb", False),
        ("SELECT customer_id, generate_series(1, 3) FROM customers", "postgres", False),
        ("SELECT * REPLACE (lower(customer_id) AS customer_id) FROM customers", "duckdb", False),
        ("SELECT email AS customer_id FROM customers", "duckdb", False),
        ("SELECT 'x' AS customer_id FROM customers", "duckdb", False),
        ("SELECT b AS customer_id FROM customers AS t(a, b)", "duckdb", False),
        ("SELECT customer_id FROM customers GROUP BY customer_id", "duckdb", False),
        ("WITH customers AS (SELECT customer_id FROM orders) SELECT customer_id FROM customers",
         "duckdb", False),
        ("SELECT customer_id FROM (SELECT customer_id FROM orders) AS customers", "duckdb", False),
        ("SELECT customer_id FROM customers UNION ALL SELECT customer_id FROM customers",
         "duckdb", False),
    ],
)  # fmt: skip
def test_distinct_only_where_a_customer_can_repeat(sql: str, dialect: str, unique: bool) -> None:
    segment = parse(f"-- dialect: {dialect}\n{sql}")
    assert one_row_per_customer(segment.query) is unique
    with clock.frozen("2026-01-31T10:00:00Z"):
        rendered = segment.members_query().sql("duckdb")
    assert rendered.startswith("SELECT DISTINCT ") is not unique


VALUE_IN_MESSAGE = [
    # (dialect, the line that refuses, column (of the function, of the value cast), words)
    ("duckdb", "WHERE error(first_name) IS NULL", 7, "function error() is not allowed: its error"),
    ("duckdb", "WHERE assert_true(false, email)", 7, "function assert_true() is not allowed"),
    ("databricks", "WHERE raise_error(email) IS NULL", 7, "function raise_error() is not"),
    ("mysql", "WHERE ERROR(first_name) IS NULL", 7, "function error() is not allowed"),
    ("postgres", "WHERE first_name::regclass IS NULL", 7, "a cast to regclass is not allowed"),
    ("postgres", "WHERE CAST(email AS regproc) IS NULL", 12, "a cast to regproc is not allowed"),
    ("postgres", "WHERE email::pg_catalog.regtype IS NULL", 7, "a cast to regtype is not"),
    ("postgres", 'WHERE email::"regrole" IS NULL', 7, "a cast to regrole is not allowed"),
    ("duckdb", "WHERE TRY_CAST(email AS regnamespace) IS NULL", 16, "a cast to regnamespace"),
    ("duckdb", "WHERE email::regclass[] IS NULL", 7, "a cast to regclass is not allowed"),
    ("postgres", "WHERE currval(first_name) > 0", 7, "function currval() is not allowed"),
    ("postgres", "WHERE has_table_privilege(email, 'select')", 7, "has_table_privilege() is not"),
    ("postgres", "WHERE to_regclass(last_name) IS NULL", 7, "function to_regclass() is not"),
    ("postgres", "WHERE to_regtype(first_name) IS NULL", 7, "function to_regtype() is not"),
    ("postgres", "WHERE query_to_xml('SELECT 1', true, true, '') IS NULL", 7, "runs SQL given"),
]


@pytest.mark.parametrize(("dialect", "where", "col", "message"), VALUE_IN_MESSAGE)
def test_functions_whose_error_shows_the_value_are_refused(
    dialect: str, where: str, col: int, message: str
) -> None:
    """error(first_name) fails with the first name as its message, 'Ann'::regclass with
    relation "ann" does not exist: words the masker cannot tell from the engine's own, which
    would reach run's output, status and the logs. Refused where they are written."""
    text = f"-- dialect: {dialect}\nSELECT customer_id FROM customers\n{where}"
    with pytest.raises(DefinitionError) as info:
        parse(text)
    assert str(info.value).startswith(f"seg.sql:3: column {col}: ")
    assert message in str(info.value)


def test_lookalikes_of_refused_functions_pass() -> None:
    parse(
        "SELECT customer_id FROM customers WHERE CAST(email AS VARCHAR) <> 'error' "
        "AND regexp_matches(email, 'has_') AND coalesce(first_name, 'regclass') <> ''"
    )
