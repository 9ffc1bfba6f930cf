"""Row hashes agree between PostgreSQL's hash functions and the warehouse's reimplementation
(:mod:`personify.quality.pghash`) for the values that trip engines up (NULL against the empty
string, unicode, separators inside text, ±0, NaN and infinities, subnormals, instants written in
other time zones), and a reconciliation by ``(key, hash)`` against a real PostgreSQL table finds
exactly the planted differences, naming the fields."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import duckdb
import psycopg
import pyarrow as pa
import pytest

from personify.quality.pghash import SESSION, row_hash_arrow, row_hash_pg_sql
from personify.quality.rowhash import PostgresRelation, compare_remote
from personify.warehouse import connect
from personify.warehouse.postgres.backend import split_url
from personify.warehouse.schema import EVENTS, ORDERS, Column

pytestmark = pytest.mark.postgres
Driver = Literal["auto", "adbc", "psycopg"]

COLUMNS = (
    Column("t", "VARCHAR"),
    Column("i", "BIGINT"),
    Column("f", "DOUBLE"),
    Column("b", "BOOLEAN"),
    Column("ts", "TIMESTAMPTZ"),
)
PARIS = timezone(timedelta(hours=2))
ROWS: list[tuple[Any, ...]] = [
    ("plain", 1, 0.1, True, datetime(2026, 1, 1, tzinfo=UTC)),
    ("", 0, 0.0, False, datetime(2026, 1, 1, 12, tzinfo=PARIS)),
    (None, None, None, None, None),
    ("héllo 👍 日本", -9_223_372_036_854_775_807, -0.0, True, datetime(1969, 12, 31, 23, 59, 59)),
    ("a:b|c;n;", 2**53, 1.0, None, datetime(2026, 3, 1, 10, 0, 0, 123_456, tzinfo=UTC)),
    ("n;", 42, 1e20, False, datetime(2000, 2, 29, tzinfo=UTC)),
    ("1:x", 7, 1.5e15, True, None),
    ("tab\tnew\nline", 8, 0.30000000000000004, True, None),
    ("quote ' \" \\", 9, 1e-7, True, None),
    ("big", 10, 9.5e15, True, None),
    ("nan", 11, float("nan"), True, None),
    ("inf", 12, float("inf"), True, None),
    ("-inf", 13, float("-inf"), True, None),
    ("tiny", 14, 5e-324, True, None),
    ("huge", 15, 1.7976931348623157e308, True, None),
    ("money", 16, 123456789.125, True, None),
]


@pytest.fixture
def pg(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(conninfo, schema) of a schema of the test's own."""
    conninfo, schema = split_url(postgres_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    yield conninfo, schema


def _pg_hashes(conninfo: str, schema: str, rows: list[tuple[Any, ...]]) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{schema}".v (id int, t text, i bigint, f double precision, '
            "b boolean, ts timestamptz)"
        )
        with conn.cursor().copy(f'COPY "{schema}".v FROM STDIN') as copy:
            for n, row in enumerate(rows):
                copy.write_row((n, *row))
        conn.execute(SESSION)
        got = conn.execute(
            f'SELECT {row_hash_pg_sql(COLUMNS, "r")} FROM "{schema}".v AS r ORDER BY id'
        ).fetchall()
    return [int(r[0]) for r in got]


def _duckdb_hashes(rows: list[tuple[Any, ...]]) -> list[int]:
    con = duckdb.connect()
    con.execute("CREATE TABLE v (id INT, t VARCHAR, i BIGINT, f DOUBLE, b BOOLEAN, ts TIMESTAMPTZ)")
    con.executemany(
        "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)", [(n, *r) for n, r in enumerate(rows)]
    )
    rows = con.sql("SELECT * FROM v ORDER BY id").to_arrow_table()
    con.close()
    return [int(h) for h in row_hash_arrow(COLUMNS, rows).to_pylist()]


def test_tricky_values_hash_alike_in_both_engines(pg: tuple[str, str]) -> None:
    ours = _duckdb_hashes(ROWS)
    theirs = _pg_hashes(*pg, ROWS)
    differing = [ROWS[n] for n, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    assert differing == []
    assert len(set(ours)) == len(ours)  # NULL, '' and 'n;' are three different rows


def test_a_change_in_any_column_changes_the_hash() -> None:
    base = ("x", 1, 2.5, True, datetime(2026, 1, 1, tzinfo=UTC))
    variants = [
        ("y", 1, 2.5, True, base[4]),
        ("x", 2, 2.5, True, base[4]),
        ("x", 1, 2.5000000000000004, True, base[4]),
        ("x", 1, 2.5, False, base[4]),
        ("x", 1, 2.5, True, base[4] + timedelta(microseconds=1)),
        (None, 1, 2.5, True, base[4]),
        ("", 1, 2.5, True, base[4]),
    ]
    hashes = _duckdb_hashes([base, *variants])
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize(
    ("mode", "driver"),
    [("hash", "adbc"), ("hash", "psycopg"), ("rows", "adbc"), ("rows", "psycopg")],
)
def test_compare_remote_finds_the_planted_drift(
    pg: tuple[str, str], tmp_path: Path, mode: Literal["hash", "rows"], driver: Driver
) -> None:
    if driver == "adbc":
        pytest.importorskip("adbc_driver_postgresql", reason="adbc-driver-postgresql not installed")
    conninfo, schema = pg
    n = 500
    start = datetime(2026, 1, 1, tzinfo=UTC)
    source = {
        "order_id": [f"o{i}" for i in range(n)],
        "email": [f"p{i}@example.org" if i % 11 else None for i in range(n)],
        "status": ["paid" if i % 3 else "reçu ✓" for i in range(n)],
        "total": [float(i) + 0.25 for i in range(n)],
        "created_at": [start + timedelta(seconds=i) for i in range(n)],
    }
    source["total"][7] = 1234567890123456.5  # spelled differently as text; hashed alike
    wh = connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    try:
        stored = pa.table(
            {**source, "source": ["shop"] * n},
            schema=pa.schema(
                [
                    ("order_id", pa.string()),
                    ("email", pa.string()),
                    ("status", pa.string()),
                    ("total", pa.float64()),
                    ("created_at", pa.timestamp("us", tz="UTC")),
                    ("source", pa.string()),
                ]
            ),
        )
        wh.load(ORDERS, stored)
        wh.execute("DELETE FROM orders WHERE order_id = 'o5'")
        wh.execute("UPDATE orders SET total = total + 1 WHERE order_id = 'o6'")
        wh.execute("UPDATE orders SET email = '' WHERE order_id = 'o11'")  # NULL at the source
        wh.execute(
            "UPDATE orders SET created_at = created_at + INTERVAL 1 MICROSECOND "
            "WHERE order_id = 'o12'"
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                f'CREATE TABLE "{schema}".src (order_id varchar primary key, email text, '
                "status text, total numeric, created_at timestamptz)"
            )
            with conn.cursor().copy(f'COPY "{schema}".src FROM STDIN') as copy:
                for row in zip(*source.values(), strict=True):
                    copy.write_row(row)
                copy.write_row(("o-new", "new@example.org", "paid", 1.0, start))
            # an instant written in another zone is the same instant
            conn.execute(
                f"UPDATE \"{schema}\".src SET created_at = created_at AT TIME ZONE 'UTC' "
                "AT TIME ZONE 'UTC'"
            )
        remote = PostgresRelation(conninfo, f'"{schema}".src', driver=driver)
        found = compare_remote(
            wh, ORDERS, "shop", remote, ["email", "status", "total", "created_at"], mode=mode
        )
    finally:
        wh.close()
    got = {(d.key, d.kind, tuple(d.fields)) for d in found.discrepancies}
    assert got == {
        ("o5", "missing_in_warehouse", ()),
        ("o6", "mismatch", ("total",)),
        ("o11", "mismatch", ("email",)),
        ("o12", "mismatch", ("created_at",)),
        ("o-new", "missing_in_warehouse", ()),
    }
    assert found.source_rows == n + 1 and found.warehouse_rows == n - 1
    if mode == "hash":
        assert found.candidates == 3 and found.settled == 0
        assert found.pulled.rows == n + 1 + 3  # every (key, hash), then 3 whole rows
    else:
        assert found.pulled.rows == n + 1


def test_json_columns_are_refused_not_misreported(pg: tuple[str, str], tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    try:
        with pytest.raises(ValueError, match="hold JSON"):
            compare_remote(wh, EVENTS, "web", PostgresRelation(pg[0], "x"), ["properties"])
    finally:
        wh.close()
