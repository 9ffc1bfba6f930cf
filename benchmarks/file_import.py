"""Import throughput of the file source: a synthetic events file through ``import_file``.

Usage: ``.venv/bin/python benchmarks/file_import.py [ROWS] [--format parquet|jsonl|csv]``
(default 1,000,000 rows of Parquet), or ``--file PATH`` for an existing events file. Prints, in
one run: reading + validating alone (the importer's own cost; goal >= 500k rows/s), loading the
validated rows alone into a fresh DuckDB warehouse (the baseline the importer cannot beat), and
the whole import end to end (hash, read, validate, load, quarantine, commit).
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


class Clock:
    """Wall and CPU seconds (CPU: all threads of this process; steadier on a shared machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def validate_only(path: Path, fmt: str) -> tuple[int, Clock, list[pa.Table]]:
    """Read and validate ``path`` without a warehouse: the importer's own cost."""
    from personify.ingest.validate import Validator
    from personify.sources.files import BATCH_ROWS
    from personify.sources.formats import read_batches
    from personify.warehouse.schema import EVENTS

    rows, good = 0, []
    with Clock() as clock:
        fields, batches = read_batches(path, fmt, rows=BATCH_ROWS)  # type: ignore[arg-type]
        with Validator(EVENTS, fmt=fmt, fields=fields, label=path.name, source="bench") as v:
            for batch in batches:
                checked = v.check(batch.data, batch.lines)
                rows += checked.read
                good.append(checked.good)
    return rows, clock, good


def session_at(root: Path) -> Session:
    """A session on a fresh DuckDB warehouse in ``root``, opened and migrated."""
    root.mkdir(parents=True, exist_ok=True)
    project = Project(
        ProjectConfig(warehouse="duckdb:///warehouse.duckdb"), root, root / "personify.yml"
    )
    session = Session(project)
    session.warehouse.relations()
    return session


def load_only(good: list[pa.Table], root: Path) -> tuple[int, Clock]:
    """Baseline: ``Warehouse.load`` of the already validated rows, one transaction, as the
    importer does it (ON CONFLICT DO NOTHING on the events' primary key)."""
    from personify.warehouse.schema import EVENTS

    with session_at(root) as session:
        wh = session.warehouse
        with Clock() as clock, wh.transaction():
            rows = sum(wh.load(EVENTS, g, on_conflict="ignore") for g in good)
        return rows, clock


def end_to_end(path: Path, root: Path) -> tuple[int, Clock]:
    """The whole import into a fresh DuckDB warehouse: hash, read, validate, load, commit."""
    with session_at(root) as session, Clock() as clock:
        result = import_file(session, path, table="events", source_name="bench")
    return result.counts["rows_read"], clock


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
        read, validate_t, good = validate_only(path, fmt)
        loaded, load_t = load_only(good, root / "baseline")
        del good
        total, total_t = end_to_end(path, root / "import")
        print(
            f"{'figure':<32} {'rows':>10} {'wall s':>7} {'rows/s':>10} {'cpu s':>7} "
            f"{'rows/cpu-s':>10}  goal"
        )
        for name, rows, t, goal in (
            (f"read + validate ({fmt})", read, validate_t, ">= 500,000 rows/s"),
            ("warehouse load only (baseline)", loaded, load_t, "baseline"),
            ("import, end to end", total, total_t, "~ validate + load"),
        ):
            print(
                f"{name:<32} {rows:>10,} {t.wall:>7.2f} {rows / t.wall:>10,.0f} {t.cpu:>7.2f} "
                f"{rows / t.cpu:>10,.0f}  {goal}"
            )


if __name__ == "__main__":
    main()
