"""Reconciling against a PostgreSQL source stays exact with the cheap row hash: any single field
changed in any row is reported as a mismatch of that row and that field (Hypothesis, against a
real PostgreSQL, on both warehouse backends — DuckDB joins ``(key, hash)``, PostgreSQL compares
whole rows), and PostgreSQL's hash functions and the warehouse's reimplementation
(:mod:`personify.quality.pghash`) agree bit for bit on any value of every type they hash."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from personify.quality.compare import Discrepancy
from personify.quality.pghash import SESSION, row_hash_arrow, row_hash_pg_sql
from personify.quality.rowhash import PostgresRelation, RemoteComparison, compare_remote
from personify.warehouse import Warehouse
from personify.warehouse.postgres.backend import split_url
from personify.warehouse.schema import ORDERS, Column

pytestmark = pytest.mark.postgres

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
FLOAT = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
INSTANT = st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "email": TEXT,
    "status": TEXT,
    "total": FLOAT,
    "discount": FLOAT,
    "created_at": INSTANT,
    "updated_at": st.one_of(st.none(), INSTANT),
}
COMPARED = list(FIELDS)
ROW = st.fixed_dictionaries(FIELDS)
TS = pa.timestamp("us", tz="UTC")


def _same(a: Any, b: Any) -> bool:
    """``NOT (a IS DISTINCT FROM b)`` in SQL: NaN equals NaN, -0.0 equals 0.0."""
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


@pytest.fixture
def source(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(conninfo, table) of an empty source table in a schema of the test's own."""
    conninfo, schema = split_url(postgres_url)
    table = f'"{schema}".src'
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f"CREATE TABLE {table} (order_id text PRIMARY KEY, email text, status text, "
            "total double precision, discount double precision, created_at timestamptz, "
            "updated_at timestamptz)"
        )
    yield conninfo, table


@given(
    rows=st.lists(ROW, min_size=1, max_size=6),
    data=st.data(),
)
@SETTINGS
def test_any_single_field_change_is_a_mismatch(
    warehouse: Warehouse, source: tuple[str, str], rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    row = data.draw(st.integers(0, len(rows) - 1), label="row")
    name = data.draw(st.sampled_from(COMPARED), label="field")
    value = data.draw(FIELDS[name], label="new value")
    assume(not _same(rows[row][name], value))
    keys = [f"o{i}" for i in range(len(rows))]
    stored = pa.Table.from_pylist(
        [{"order_id": k, **r, "source": "shop"} for k, r in zip(keys, rows, strict=True)],
        schema=pa.schema(
            [pa.field("order_id", pa.string())]
            + [
                pa.field(n, pa.float64() if n in ("total", "discount") else pa.string())
                if n not in ("created_at", "updated_at")
                else pa.field(n, pa.timestamp("us", tz="UTC"))
                for n in COMPARED
            ]
            + [pa.field("source", pa.string())]
        ),
    )
    warehouse.execute("DELETE FROM orders")
    warehouse.load(ORDERS, stored)
    changed = [dict(r) for r in rows]
    changed[row][name] = value
    conninfo, table = source
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")
        with conn.cursor().copy(f"COPY {table} (order_id, {', '.join(COMPARED)}) FROM STDIN") as cp:
            for k, r in zip(keys, changed, strict=True):
                cp.write_row((k, *(r[n] for n in COMPARED)))
    found = compare_remote(warehouse, ORDERS, "shop", PostgresRelation(conninfo, table), COMPARED)
    assert found.discrepancies == [Discrepancy(keys[row], "mismatch", [name])]
    assert found.source_rows == found.warehouse_rows == len(rows)


TYPED = (
    Column("t", "VARCHAR"),
    Column("i", "BIGINT"),
    Column("n", "INTEGER"),
    Column("b", "BOOLEAN"),
    Column("f", "DOUBLE"),
    Column("z", "TIMESTAMPTZ"),
    Column("l", "TIMESTAMP"),
)
TYPED_ROW = st.tuples(
    TEXT,
    st.one_of(st.none(), st.integers(-(2**63) + 1, 2**63 - 1)),
    st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    st.one_of(st.none(), st.booleans()),
    FLOAT,
    st.one_of(st.none(), INSTANT),
    st.one_of(st.none(), st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1))),
)


@given(rows=st.lists(TYPED_ROW, min_size=1, max_size=20))
@SETTINGS
def test_postgres_hashes_rows_as_the_warehouse_does(
    postgres_url: str, rows: list[tuple[Any, ...]]
) -> None:
    conninfo, schema = split_url(postgres_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".typed (id int, t text, i bigint, n integer, '
            "b boolean, f double precision, z timestamptz, l timestamp)"
        )
        conn.execute(f'TRUNCATE "{schema}".typed')
        with conn.cursor().copy(f'COPY "{schema}".typed FROM STDIN') as cp:
            for n, row in enumerate(rows):
                cp.write_row((n, *row))
        conn.execute("SET TimeZone = 'America/New_York'")  # the hash must not depend on it
        conn.execute(SESSION)
        theirs = [
            int(r[0])
            for r in conn.execute(
                f'SELECT {row_hash_pg_sql(TYPED, "r")} FROM "{schema}".typed AS r ORDER BY id'
            ).fetchall()
        ]
    types = [pa.string(), pa.int64(), pa.int32(), pa.bool_(), pa.float64()]
    types += [pa.timestamp("us", tz="UTC"), pa.timestamp("us")]
    table = pa.table(
        {c.name: pa.array([r[i] for r in rows], t) for i, (c, t) in enumerate(zip(TYPED, types))}
    )
    assert row_hash_arrow(TYPED, table).to_pylist() == theirs


def test_the_sessions_time_zone_cannot_hide_a_change(
    warehouse: Warehouse, source: tuple[str, str]
) -> None:
    """PostgreSQL hashes an instant in UTC whatever its session's zone: in New York the source's
    05:30Z is 01:30 local, which must not pass for the stored 01:30Z."""
    stored = pa.table(
        {
            "order_id": ["o1"],
            "created_at": pa.array([datetime(2026, 11, 1, 1, 30, tzinfo=UTC)], TS),
            "source": ["shop"],
        }
    )
    warehouse.load(ORDERS, stored)
    conninfo, table = source
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {table} (order_id, created_at) VALUES ('o1', %s)",
            [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)],
        )
    new_york = f"{conninfo}?options=-c%20TimeZone%3DAmerica/New_York"
    found = compare_remote(
        warehouse, ORDERS, "shop", PostgresRelation(new_york, table), ["created_at"]
    )
    assert found.discrepancies == [Discrepancy("o1", "mismatch", ["created_at"])]
    if warehouse.dialect == "duckdb":  # by hashes: the rows differed by hash, not by luck
        assert isinstance(found, RemoteComparison) and found.candidates == 1
