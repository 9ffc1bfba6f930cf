"""User SQL's arithmetic gives one answer — value and type — on every warehouse (README:
Segments, "Arithmetic"): divisions over the columns of the team's own tables (``relations:``,
typed from the warehouse's catalog when the query runs), ``//`` / ``DIV``, ``ROUND`` of
integers and DECIMALs. The last test runs both engines side by side over random rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.audience_data import load_customers

from personify.audiences.relations import Relation, qualify
from personify.warehouse import Warehouse, connect
from personify.warehouse.query import run_user_query


def _create_numbers(wh: Warehouse, schema: str) -> None:
    wh.execute(f"CREATE SCHEMA {schema}")
    wh.execute(
        f"CREATE TABLE {schema}.numbers (x BIGINT, y BIGINT, i INTEGER, d NUMERIC(12, 3), "
        "z DOUBLE PRECISION)"
    )


@pytest.fixture
def team_schema(warehouse: Warehouse) -> Iterator[str]:
    """A schema of the team's own with a table of numbers, read as the relation ``nums``."""
    name = f"team_{uuid.uuid4().hex[:8]}"
    _create_numbers(warehouse, name)
    yield name
    warehouse.execute(f"DROP SCHEMA {name} CASCADE")


def _run(wh: Warehouse, schema: str, sql: str, dialect: str) -> list[tuple[Any, ...]]:
    relations = [Relation(name="nums", target=f"{schema}.numbers")]
    return run_user_query(
        wh, sql, dialect=dialect, names=["nums"], rewrite=partial(qualify, relations=relations)
    ).rows


def _typed(row: tuple[Any, ...]) -> list[tuple[str, Any]]:
    return [(type(v).__name__, v) for v in row]


def test_relation_columns_divide_as_their_types_say(warehouse: Warehouse, team_schema: str) -> None:
    # PostgreSQL's / of a relation's BIGINTs: an integer division, an integer on DuckDB too
    # (a CASE by typeof() made it the DOUBLE 4.0), its SUM of BIGINTs a NUMERIC, so 3 / 2 is
    # 1.5 (DuckDB divided the HUGEINT sum as an integer: 1); a NUMERIC quotient is a DOUBLE on
    # both (DuckDB has no exact division of DECIMALs)
    warehouse.execute(
        f"INSERT INTO {team_schema}.numbers VALUES (9, 2, 7, 2.675, 2.5), (-6, 2, -4, 0.125, 1)"
    )
    sql = (
        "SELECT SUM(x) / COUNT(*), SUM(i) / COUNT(*), MIN(x / y), MAX(i / y), MAX(d / y), "
        "MAX(x / 2.0), ROUND(SUM(x) / COUNT(*), 0) FROM nums"
    )
    (row,) = _run(warehouse, team_schema, sql, "postgres")
    assert _typed(row) == [
        ("float", 1.5),
        ("int", 1),
        ("int", -3),
        ("int", 3),
        ("float", 1.3375),
        ("float", 4.5),
        ("float", 2.0),
    ]
    rows = _run(warehouse, team_schema, "SELECT x / y FROM nums ORDER BY x", "postgres")
    assert [_typed(r) for r in rows] == [[("int", -3)], [("int", 4)]]
    # grouped on (GROUP BY 1 writes the division out again when the query is typed): typed
    # still — it was a DOUBLE on DuckDB, and a NUMERIC's quotient a NUMERIC on PostgreSQL
    sql = "SELECT x / y AS q, d / 2 AS h, COUNT(*) FROM nums GROUP BY 1, 2 ORDER BY 1"
    rows = _run(warehouse, team_schema, sql, "postgres")
    assert [_typed(r) for r in rows] == [
        [("int", -3), ("float", 0.0625), ("int", 1)],
        [("int", 4), ("float", 1.3375), ("int", 1)],
    ]
    load_customers(warehouse, [{"customer_id": "a", "order_count": 3}])
    sql = "SELECT order_count / 2 AS q, COUNT(*) FROM customers GROUP BY 1"
    assert _typed(_run(warehouse, team_schema, sql, "postgres")[0]) == [("int", 1), ("int", 1)]


def test_whole_quotients_are_bigints_truncated_toward_zero(
    warehouse: Warehouse, team_schema: str
) -> None:
    # DuckDB's // of a DOUBLE or a DECIMAL was a true division (2.5 // 2 = 1.25), PostgreSQL's
    # DIV a NUMERIC, and of a DOUBLE no function at all
    warehouse.execute(
        f"INSERT INTO {team_schema}.numbers VALUES (-7, 2, 7, 2.675, -2.5), (7, 0, 1, 1, 1)"
    )
    for dialect, op in (("duckdb", "{} // {}"), ("mysql", "{} DIV {}")):
        terms = ", ".join(op.format(a, b) for a, b in (("x", "y"), ("z", "y"), ("d", "y")))
        rows = _run(warehouse, team_schema, f"SELECT {terms} FROM nums ORDER BY x", dialect)
        assert [_typed(r) for r in rows] == [
            [("int", -3), ("int", -1), ("int", 1)],
            [("NoneType", None)] * 3,  # (a zero divisor)
        ], dialect
    load_customers(warehouse, [{"customer_id": "a", "order_count": -7, "engagement_score": 7.5}])
    (row,) = run_user_query(
        warehouse,
        "SELECT order_count // 2, engagement_score // 2, 7 // 2 FROM customers",
        dialect="duckdb",
    ).rows
    assert _typed(row) == [("int", -3), ("int", 3), ("int", 3)]
    # cast to BIGINT by the query itself: still truncated, and run on PostgreSQL (DuckDB's //
    # of a DOUBLE cast was 3.75 rounded, 4; PostgreSQL had no DIV of a DOUBLE and failed)
    (row,) = run_user_query(
        warehouse,
        "SELECT CAST(engagement_score // 2 AS BIGINT), CAST(order_count // 2 AS BIGINT), "
        "CAST(-engagement_score // 2 AS BIGINT) FROM customers",
        dialect="duckdb",
    ).rows
    assert _typed(row) == [("int", 3), ("int", -3), ("int", -3)]


def test_round_keeps_integers_and_decimals_their_type(
    warehouse: Warehouse, team_schema: str
) -> None:
    # ROUND of an integer is the integer (PostgreSQL's round(bigint) was the DOUBLE 3.0), of a
    # DECIMAL a DECIMAL on both (each engine's own: exact, half away from zero)
    load_customers(
        warehouse,
        [{"customer_id": f"c{n}", "order_count": 3 if n < 27 else 2} for n in range(40)],
    )
    sql = (
        "SELECT ROUND(MAX(order_count)), ROUND(MAX(order_count), 2), "
        "ROUND(CAST(2.675 AS DECIMAL(10, 3)), 2), ROUND(CAST(-0.125 AS DECIMAL(10, 3)), 2), "
        "ROUND(CAST(125.5 AS DECIMAL(10, 1)) * 2, -1) FROM customers"
    )
    for dialect in ("duckdb", "postgres", "mysql"):
        (row,) = run_user_query(warehouse, sql, dialect=dialect).rows
        assert _typed(row) == [
            ("int", 3),
            ("int", 3),
            ("Decimal", Decimal("2.68")),
            ("Decimal", Decimal("-0.13")),
            ("Decimal", Decimal("250")),
        ], dialect
    # PostgreSQL's SUM of BIGINTs over COUNT is 107 / 40 = 2.675: rounded as one DOUBLE on both
    # (DuckDB's own ROUND of its DOUBLE said 2.67, PostgreSQL's of its NUMERIC 2.68)
    mean = "SELECT ROUND(SUM(order_count) / COUNT(*), 2) FROM customers"
    assert run_user_query(warehouse, mean, dialect="postgres").rows == [(2.68,)]
    warehouse.execute(f"INSERT INTO {team_schema}.numbers VALUES (9, 2, 7, 2.675, 2.5)")
    (row,) = _run(warehouse, team_schema, "SELECT ROUND(d, 2), ROUND(z) FROM nums", "postgres")
    assert row == (2.68, 3)  # (a relation's column: rounded half away, as a DOUBLE)


def test_an_average_of_relation_columns_is_a_double(warehouse: Warehouse, team_schema: str) -> None:
    # PostgreSQL's AVG of a relation's BIGINT or NUMERIC was a NUMERIC (a Decimal, and
    # CAST(AVG(x) AS INT) of 2.5 rounded as a decimal: 3), DuckDB's a DOUBLE (2): typed from
    # the catalog, it is a DOUBLE on both; an AVG of a relation's DOUBLE stays one
    warehouse.execute(
        f"INSERT INTO {team_schema}.numbers VALUES (2, 1, 2, 2.5, 1.5), (3, 1, 3, 0.5, 0.5)"
    )
    sql = (
        "SELECT AVG(x), AVG(i), AVG(d), AVG(z), CAST(AVG(x) AS INT), "
        "AVG(x) FILTER (WHERE x > 2) FROM nums"
    )
    for dialect in ("postgres", "duckdb"):
        (row,) = _run(warehouse, team_schema, sql, dialect)
        assert _typed(row) == [
            ("float", 2.5),
            ("float", 2.5),
            ("float", 1.5),
            ("float", 1.0),
            ("int", 2),
            ("float", 3.0),
        ], dialect
        (row,) = _run(warehouse, team_schema, "SELECT AVG(d) OVER () FROM nums LIMIT 1", dialect)
        assert _typed(row) == [("float", 1.5)], dialect


def test_averages_and_divisions_inside_each_other_are_typed(
    warehouse: Warehouse, team_schema: str
) -> None:
    # an AVG inside a division and a division inside an AVG, both over a relation's columns:
    # the division's operands and the AVG both typed from the catalog (matched by their marks),
    # so AVG(x / y) averages the integer quotients (1, 1) as a DOUBLE and AVG(x) / 2 divides a
    # DOUBLE — on PostgreSQL AVG(x) was a NUMERIC, x / y an integer division either way
    warehouse.execute(
        f"INSERT INTO {team_schema}.numbers VALUES (2, 2, 2, 2.5, 1.5), (3, 2, 3, 0.5, 0.5)"
    )
    sql = (
        "SELECT AVG(x / y), AVG(x) / 2, AVG(d) / i, AVG(x / y) / 2, CAST(AVG(x) / 2 AS INT), "
        "AVG(x / 2) FROM nums GROUP BY i ORDER BY i"
    )
    for dialect, half in (("postgres", 1.0), ("duckdb", 1.5)):  # (3 / 2: DuckDB's / is true)
        rows = _run(warehouse, team_schema, sql, dialect)
        assert [_typed(r) for r in rows] == [
            [("float", 1.0), ("float", 1.0), ("float", 1.25), ("float", 0.5), ("int", 1)]
            + [("float", 1.0)],
            [("float", half), ("float", 1.5), ("float", 0.5 / 3), ("float", half / 2)]
            + [("int", 2), ("float", half)],
        ], dialect


# ----------------------------------------------------------------- both engines, random rows
BIG = 10**12
ROWS = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(-BIG, BIG)),
        st.one_of(st.none(), st.integers(-5, 5)),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(10**9), 10**9).map(lambda n: Decimal(n).scaleb(-3)),
        st.one_of(
            st.integers(-(10**6), 10**6).map(lambda n: n / 8),
            st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
        ),
    ),
    min_size=1,
    max_size=6,
)
PARITY = (
    (
        "postgres",
        "SELECT x / y, i / y, d / y, z / y, x / 2.0, ROUND(d, 2), ROUND(z, 1), ROUND(i / 3.0, 2) "
        "FROM nums ORDER BY 1, 2, 3, 4, 5",
    ),
    (
        "postgres",
        "SELECT SUM(x) / COUNT(*), SUM(i) / COUNT(*), ROUND(SUM(x) / COUNT(*), 2), "
        "SUM(d) / COUNT(*), ROUND(SUM(CAST(d AS NUMERIC(20, 3))), 1) FROM nums",
    ),
    (
        "duckdb",
        "SELECT x // y, i // y, d // y, z // y, ROUND(CAST(d AS DECIMAL(12, 3)), 2), "
        "ROUND(CAST(d AS DECIMAL(12, 3)) * 3 + 1, -2), ROUND(i) FROM nums ORDER BY 1, 2, 3, 4",
    ),
    ("mysql", "SELECT x DIV y, d DIV 7, x / y FROM nums ORDER BY 1, 2, 3"),
)


def _kind(v: Any) -> str:
    return "float" if isinstance(v, float) else type(v).__name__


@pytest.mark.postgres
def test_both_engines_give_one_answer_over_random_rows(postgres_url: str, tmp_path: Path) -> None:
    engines = [connect(f"duckdb:///{tmp_path / 'w.duckdb'}"), connect(postgres_url)]
    schema = f"team_{uuid.uuid4().hex[:8]}"
    for wh in engines:
        _create_numbers(wh, schema)

    @settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=ROWS)
    def same_answers(rows: list[tuple[Any, ...]]) -> None:
        answers = []
        for wh in engines:
            wh.execute(f"DELETE FROM {schema}.numbers")
            marks = ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
            wh.execute(f"INSERT INTO {schema}.numbers VALUES {marks}", [v for r in rows for v in r])
            got = [_run(wh, schema, sql, dialect) for dialect, sql in PARITY]
            answers.append([[[(_kind(v), v) for v in r] for r in q] for q in got])
        assert answers[0] == answers[1]

    try:
        same_answers()
    finally:
        for wh in engines:
            wh.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            wh.close()
