"""Import throughput of the file source: a synthetic events file through ``import_file``.

Usage: ``.venv/bin/python benchmarks/file_import.py [ROWS] [--format parquet|jsonl|csv]``
(default 1,000,000 rows of Parquet) on a fresh DuckDB warehouse in a temporary folder. Prints
rows/s for the whole import (hash, read, validate, load, commit).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from personify.config import Project, ProjectConfig
from personify.session import Session
from personify.sources.files import import_file


def events(n: int) -> pa.Table:
    """``n`` Segment-like track events (nested properties and context)."""
    i = pa.array(np.arange(n))
    ids = pc.binary_join_element_wise("m-", pc.cast(i, pa.string()), "")
    users = pc.binary_join_element_wise("u-", pc.cast(pc.divide(i, 10), pa.string()), "")
    base = np.datetime64("2025-01-01T00:00:00", "us")
    stamps = pa.array(base + np.arange(n).astype("timedelta64[s]"), pa.timestamp("us", "UTC"))
    names = pa.array(
        np.array(["Product Viewed", "Product Added", "Order Completed"])[np.arange(n) % 3]
    )
    products = pc.binary_join_element_wise("p-", pc.cast(pc.divide(i, 7), pa.string()), "")
    properties = pa.StructArray.from_arrays(
        [products, pa.array(np.round(np.arange(n) % 500 * 1.25, 2))], ["product_id", "price"]
    )
    context = pa.StructArray.from_arrays(
        [pa.array(["Mozilla/5.0"] * n), pa.array(["https://shop.example/p"] * n)],
        ["userAgent", "url"],
    )
    return pa.table(
        {
            "messageId": ids,
            "type": pa.array(["track"] * n),
            "event": names,
            "userId": users,
            "timestamp": stamps,
            "properties": properties,
            "context": context,
        }
    )


def write(table: pa.Table, folder: Path, fmt: str) -> Path:
    path = folder / f"events.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        flat = table.drop_columns(["properties", "context"])
        pacsv.write_csv(flat, path)
    else:
        import duckdb

        con = duckdb.connect()
        con.register("t", table)
        rows = con.sql("SELECT to_json(t)::VARCHAR AS j FROM t").fetchall()
        path.write_text("\n".join(r[0] for r in rows) + "\n")
    return path


def validate_only(path: Path, fmt: str) -> tuple[int, float]:
    """Read and validate ``path`` without a warehouse: the importer's own cost."""
    from personify.ingest.validate import Validator
    from personify.sources.files import BATCH_ROWS
    from personify.sources.formats import read_batches
    from personify.warehouse.schema import EVENTS

    t0 = time.perf_counter()
    fields, batches = read_batches(path, fmt, rows=BATCH_ROWS)  # type: ignore[arg-type]
    rows = 0
    with Validator(EVENTS, fmt=fmt, fields=fields, label=path.name, source="bench") as v:
        for batch in batches:
            rows += v.check(batch.data, batch.lines).read
    return rows, time.perf_counter() - t0


def end_to_end(path: Path, root: Path) -> tuple[int, float]:
    """The whole import into a fresh DuckDB warehouse: hash, read, validate, load, commit."""
    project = Project(
        ProjectConfig(warehouse="duckdb:///warehouse.duckdb"), root, root / "personify.yml"
    )
    with Session(project) as session:
        session.warehouse.relations()  # open and migrate before timing
        t0 = time.perf_counter()
        result = import_file(session, path, table="events", source_name="bench")
        seconds = time.perf_counter() - t0
    return result.counts["rows_read"], seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--format", default="parquet", choices=["parquet", "jsonl", "csv"])
    parser.add_argument("--file", type=Path, help="an existing events file instead of synthetic")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = args.file.resolve() if args.file else write(events(args.rows), root, args.format)
        fmt = path.suffix.lstrip(".") if args.file else args.format
        print(f"{'stage':<22} {'format':<8} {'rows':>10} {'seconds':>8} {'rows/s':>10}")
        for name, (rows, seconds) in (
            ("read + validate", validate_only(path, fmt)),
            ("import (end to end)", end_to_end(path, root)),
        ):
            print(f"{name:<22} {fmt:<8} {rows:>10,} {seconds:>8.2f} {rows / seconds:>10,.0f}")


if __name__ == "__main__":
    main()
