"""Reconcile 1,000,000 orders between a source and the warehouse — Personify's in-engine
comparison (:func:`personify.quality.compare.compare`) against reladiff on the same data, same
run.

Usage: ``.venv/bin/python benchmarks/reconcile.py [ROWS] [--source duckdb|postgres]``
(default 1,000,000 rows, the source a DuckDB file; ``postgres`` puts the source table in a
schema of the run's own (``reconcile_bench_<random>``, dropped at the end, whatever happens) in
PostgreSQL at ``PERSONIFY_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432/test``).
reladiff (and psycopg2 for its PostgreSQL driver) come with the ``bench`` extra.

The warehouse (DuckDB) holds ROWS orders of source ``bench``; the source holds the same orders
with planted drift: 100 deleted from the warehouse, 100 altered in the warehouse (``total``),
100 added at the source. Personify reads the source's rows (Arrow) and compares them in the
warehouse engine (staging table, ``FULL OUTER JOIN``, per-column ``IS DISTINCT FROM``); reladiff
diffs the two tables (hash bisection across databases, or a join within one). The table shows
the wall seconds of each and whether each found exactly the 300 planted keys. Goal: ≤ 3 s and
faster than reladiff.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import duckdb

from personify.quality.compare import compare
from personify.quality.pghash import row_hash_pg_sql
from personify.quality.rowhash import PostgresRelation, compare_remote
from personify.warehouse import connect
from personify.warehouse.schema import ORDERS

COLUMNS = "order_id, email, status, currency, total"
COMPARED = ("email", "status", "currency", "total", "created_at")
DRIFT = 100
SCHEMA = f"reconcile_bench_{uuid.uuid4().hex[:8]}"
"""The PostgreSQL schema of this run's source table (dropped at the end)."""
SRC = f"{SCHEMA}.src_orders"


def _orders_sql(n: int, start: int = 0) -> str:
    return (
        "SELECT 'o' || CAST(i AS VARCHAR) AS order_id, 'p' || CAST(i % 50000 AS VARCHAR) "
        "|| '@example.org' AS email, CASE WHEN i % 7 = 0 THEN 'refunded' ELSE 'paid' END AS "
        "status, 'EUR' AS currency, CAST(i % 997 AS DOUBLE) + 0.5 AS total, "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS created_at "
        f"FROM range({start}, {start + n}) AS t(i)"
    )


def build(root: Path, rows: int, source_kind: str, pg_url: str) -> str:
    """The warehouse file and the source table; returns the source's URL for reladiff."""
    wh = connect(f"duckdb:///{root / 'warehouse.duckdb'}")
    try:
        wh.execute(
            f"INSERT INTO orders ({COLUMNS}, created_at, source) "
            f"SELECT *, 'bench' FROM ({_orders_sql(rows)}) AS o"
        )
        wh.execute(
            f"DELETE FROM orders WHERE order_id IN "
            f"(SELECT 'o' || CAST(i AS VARCHAR) FROM range(0, {DRIFT * 10}, 10) AS t(i))"
        )
        wh.execute(
            f"UPDATE orders SET total = total + 1 WHERE order_id IN "
            f"(SELECT 'o' || CAST(i AS VARCHAR) FROM range(5, {DRIFT * 10 + 5}, 10) AS t(i))"
        )
        wh.execute("CHECKPOINT")
    finally:
        wh.close()
    source_sql = f"{_orders_sql(rows)} UNION ALL {_orders_sql(DRIFT, rows)}"
    if source_kind == "duckdb":
        path = root / "source.duckdb"
        con = duckdb.connect(str(path))
        con.execute(f"CREATE TABLE src_orders AS SELECT * FROM ({source_sql}) AS s")
        con.execute("ALTER TABLE src_orders ADD PRIMARY KEY (order_id)")
        con.close()
        return f"duckdb://{path}"
    import psycopg
    import pyarrow.csv as pacsv

    data = duckdb.sql(f"SELECT {COLUMNS}, created_at FROM ({source_sql}) AS s").to_arrow_table()
    csv = io.BytesIO()
    pacsv.write_csv(data, csv, pacsv.WriteOptions(include_header=False))
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(f"CREATE SCHEMA {SCHEMA}")
        pg.execute(
            f"CREATE TABLE {SRC} (order_id VARCHAR PRIMARY KEY, email VARCHAR, status "
            "VARCHAR, currency VARCHAR, total DOUBLE PRECISION, created_at TIMESTAMPTZ)"
        )
        with pg.cursor().copy(f"COPY {SRC} ({COLUMNS}, created_at) FROM STDIN (FORMAT csv)") as cp:
            view = csv.getbuffer()
            for at in range(0, len(view), 1 << 20):
                cp.write(view[at : at + (1 << 20)])
        pg.execute(f"VACUUM ANALYZE {SRC}")
    return pg_url


def drop_source(pg_url: str) -> None:
    """Drop this run's PostgreSQL schema (the benchmark leaves nothing behind)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("SET lock_timeout = '30s'")  # never hang the run on a straggling reader
        pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def read_source(source_kind: str, source_url: str) -> Any:
    """The source's rows as Arrow (what a re-read hands the comparison)."""
    if source_kind == "duckdb":
        con = duckdb.connect(source_url.removeprefix("duckdb://"), read_only=True)
        try:
            return con.sql(f"SELECT {COLUMNS}, created_at FROM src_orders").to_arrow_table()
        finally:
            con.close()
    import io

    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buf = io.BytesIO()  # COPY … TO STDOUT: the fastest way out of PostgreSQL, parsed by Arrow
    with (
        psycopg.connect(source_url) as pg,
        pg.cursor().copy(
            f"COPY (SELECT {COLUMNS}, created_at FROM {SRC}) TO STDOUT (FORMAT csv)"
        ) as copy,
    ):
        for chunk in copy:
            buf.write(chunk)
    names = [*(c.strip() for c in COLUMNS.split(",")), "created_at"]
    types = {"total": pa.float64(), "created_at": pa.timestamp("us", tz="UTC")}
    return pacsv.read_csv(
        io.BytesIO(buf.getvalue()),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(
            column_types={n: types.get(n, pa.string()) for n in names}
        ),
    )


def personify_run(root: Path, source_kind: str, source_url: str) -> tuple[float, int]:
    """Whole rows pulled (Arrow) and compared in the warehouse engine."""
    t0 = time.perf_counter()
    rows = read_source(source_kind, source_url)
    wh = connect(f"duckdb:///{root / 'warehouse.duckdb'}")
    try:
        found = compare(wh, ORDERS, "bench", rows)
    finally:
        wh.close()
    return time.perf_counter() - t0, len(found.discrepancies)


def personify_remote_run(
    root: Path, source_url: str, mode: Literal["hash", "rows"]
) -> tuple[float, int, str]:
    """PostgreSQL source through :func:`compare_remote`: ``rows`` pulls whole rows through
    ADBC (binary COPY → Arrow); ``hash`` pulls (key, row hash) hashed in PostgreSQL while
    DuckDB hashes the stored rows, joins them, then fetches whole rows of the differing keys
    only."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    wh = connect(f"duckdb:///{root / 'warehouse.duckdb'}")
    try:
        remote = PostgresRelation(source_url, SRC)
        found = compare_remote(wh, ORDERS, "bench", remote, COMPARED, mode=mode)
    finally:
        wh.close()
    note = (
        f"{time.process_time() - cpu0:.2f} CPU-s here; "
        f"pulled {found.pulled.rows:,} rows ({found.pulled.bytes / 1e6:.1f} MB Arrow) in "
        f"{found.pulled.seconds:.2f} s"
        + (f"; {found.candidates} fetched whole" if mode == "hash" else "")
    )
    return time.perf_counter() - t0, len(found.discrepancies), note


def checksum_level(source_url: str, buckets: int = 4096) -> float:
    """The first level of a checksum bisection: count and XOR of row hashes per key bucket,
    computed in PostgreSQL (4,096 rows come back). A bisection needs this pass and at least
    one more over the differing buckets."""
    import psycopg

    cols = [ORDERS.column(c) for c in COMPARED]
    key = [ORDERS.column("order_id")]
    sql = (
        f"SELECT {row_hash_pg_sql(key, 'r')} & {buckets - 1} AS b, count(*), "
        f"bit_xor({row_hash_pg_sql(cols, 'r')}) FROM {SRC} AS r GROUP BY 1"
    )
    t0 = time.perf_counter()
    with psycopg.connect(source_url) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        pg.execute(sql).fetchall()
    return time.perf_counter() - t0


def postgres_cpu(source_url: str) -> dict[str, float] | None:
    """CPU seconds of the PostgreSQL backend producing what each mode pulls (binary ``COPY``
    read and dropped; ``/proc`` of the backend: a local server only)."""
    import psycopg

    keys = [ORDERS.column("order_id")]
    cols = [ORDERS.column(c) for c in COMPARED]
    names = ", ".join(c.name for c in [*keys, *cols])
    queries = {
        "whole rows": f"SELECT {names} FROM {SRC}",
        "key + hash": f"SELECT order_id, {row_hash_pg_sql(cols, 'r')} FROM {SRC} AS r",
    }
    out: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(source_url) as pg:
        pg.execute("SET TimeZone = 'UTC'")
        row = pg.execute("SELECT pg_backend_pid()").fetchone()
        stat = Path(f"/proc/{row[0] if row else 0}/stat")
        if not stat.exists():
            return None

        def used() -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        for label, sql in queries.items():
            before = used()
            with pg.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)") as copy:
                for _ in copy:
                    pass
            out[label] = used() - before
    return out


def reladiff_run(root: Path, source_url: str) -> tuple[float, int] | None:
    try:
        from reladiff import connect_to_table, diff_tables
    except ImportError:
        return None
    extra = ("email", "status", "currency", "total")
    t0 = time.perf_counter()
    table = SRC if source_url.startswith("postgres") else "src_orders"
    a = connect_to_table(source_url, table, "order_id", extra_columns=extra)
    b = connect_to_table(
        f"duckdb://{root / 'warehouse.duckdb'}",
        "orders",
        "order_id",
        extra_columns=extra,
        where="source = 'bench'",
    )
    try:
        keys = {row[1][0] for row in diff_tables(a, b)}
    finally:  # its connections hold locks on the source table until closed
        a.database.close()
        b.database.close()
    return time.perf_counter() - t0, len(keys)


REMOTE_MODES: tuple[tuple[str, Literal["hash", "rows"]], ...] = (
    ("personify rows (ADBC)", "rows"),
    ("personify key+hash", "hash"),
)
"""PostgreSQL source: label, :func:`compare_remote` mode."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--source", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each personify mode (the best is shown)"
    )
    args = parser.parse_args()
    pg_url = os.environ.get("PERSONIFY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        run(args.rows, args.source, pg_url, max(1, args.repeat))
    finally:
        if args.source == "postgres":
            drop_source(pg_url)


def run(rows: int, source: str, pg_url: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        source_url = build(root, rows, source, pg_url)
        built = time.perf_counter() - t0
        print(f"built {rows:,} rows (+{DRIFT} at the source) in {built:.1f} s")
        planted = 3 * DRIFT
        print(f"\nreconcile {rows:,} orders, source {source}, warehouse duckdb ({os.getloadavg()})")
        print(f"{'tool':<26}{'seconds':>10}{'keys found':>12}{'exact':>8}")
        ours = min(personify_run(root, source, source_url) for _ in range(repeat))
        print(
            f"{'personify compare':<26}{ours[0]:>10.2f}{ours[1]:>12,}{str(ours[1] == planted):>8}",
            flush=True,
        )
        if source == "postgres":
            best = ours
            for label, mode in REMOTE_MODES:
                got = min(personify_remote_run(root, source_url, mode) for _ in range(repeat))
                print(
                    f"{label:<26}{got[0]:>10.2f}{got[1]:>12,}{str(got[1] == planted):>8}"
                    f"   {got[2]}",
                    flush=True,
                )
                best = min(best, got[:2])
            cpu = postgres_cpu(source_url)
            if cpu:
                print(
                    "PostgreSQL backend CPU-s: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                )
            level = checksum_level(source_url)
            print(f"{'checksums, 1st level':<26}{level:>10.2f}{'—':>12}{'—':>8}   4,096 buckets")
            ours = best
        theirs = reladiff_run(root, source_url)
    if theirs is None:
        print(f"{'reladiff':<26}  (not installed: pip install .[bench])")
        return
    print(
        f"{'reladiff diff_tables':<26}{theirs[0]:>10.2f}{theirs[1]:>12,}"
        f"{str(theirs[1] == planted):>8}"
    )
    print(f"\nspeed-up: {theirs[0] / ours[0]:.1f}x   load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
