"""A 100,000-record paginated, incremental REST sync from a local mock API with a 429 every 25th
request — Personify's REST source against dlt's ``rest_api`` source, same mock, same run.

Usage: ``.venv/bin/python benchmarks/rest_sync.py [RECORDS] [--page N] [--retry-after S]``
(default 100,000 records, 500 per page, ``Retry-After: 0``). Needs the ``bench`` extra (dlt).

Both pull ``GET /generic/items?since=…&offset=…&limit=…`` (offset pagination with ``total``,
an ``updated_at`` cursor, primary key ``id``) into a fresh DuckDB file: a first full sync, then,
after 1% of the records change, a second incremental sync. The table shows wall and CPU seconds
of each, the records per second, and checks that both end with the same rows (ids, names,
prices). Goal: the same rows, Personify ≥ 5× faster than dlt.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from personify.config import (
    BearerAuth,
    Endpoint,
    Incremental,
    Paginator,
    Project,
    ProjectConfig,
    RestClient,
    RestResource,
    RestSource,
    Secret,
)
from personify.demo.mock_apis import TOKEN, MockApis, serve_mock_apis
from personify.session import Session
from personify.sources.rest import sync_rest_source

START = datetime(2026, 1, 1, tzinfo=UTC)
CATEGORIES = ("Tops", "Shoes", "Beauty", "Home", "Outdoor")


def world(n: int) -> MockApis:
    apis = MockApis()
    for i in range(1, n + 1):
        at = (START + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        apis.items.append(
            {
                "id": i,
                "name": f"Product {i}",
                "sku": f"SKU-{i:07d}",
                "price": round(5 + (i % 400) * 0.25, 2),
                "category": CATEGORIES[i % 5],
                "stock": i % 37,
                "attributes": {"color": ("red", "blue", "black")[i % 3], "size": i % 9},
                "updated_at": at,
            }
        )
    return apis


def change_some(apis: MockApis, every: int) -> int:
    changed = 0
    for record in apis.items[::every]:
        apis.upsert("items", {**record, "name": record["name"] + " (new)"})
        changed += 1
    return changed


def personify_source(url: str, page: int) -> RestSource:
    resource = RestResource(
        name="items",
        table="products",
        primary_key="id",
        endpoint=Endpoint(
            path="/generic/items",
            data_selector="items",
            paginator=Paginator(type="offset", limit=page, total_path="total"),
            incremental=Incremental(
                cursor_path="updated_at", start_param="since", initial_value="2000-01-01T00:00:00Z"
            ),
        ),
        mapping={
            "product_id": "id",
            "name": "name",
            "sku": "sku",
            "price": "price",
            "category": "category",
            "stock": "stock",
            "updated_at": "updated_at",
        },
    )
    client = RestClient(
        base_url=url,
        auth=BearerAuth(token=Secret(TOKEN)),
        requests_per_second=10_000,
        backoff_max=60,
    )
    return RestSource(name="catalog", client=client, resources=(resource,), batch_rows=20_000)


def dlt_source(url: str, page: int) -> Any:
    from dlt.sources.rest_api import rest_api_source

    return rest_api_source(
        {
            "client": {
                "base_url": url,
                "auth": {"type": "bearer", "token": TOKEN},
                "paginator": {
                    "type": "offset",
                    "limit": page,
                    "offset_param": "offset",
                    "limit_param": "limit",
                    "total_path": "total",
                },
            },
            "resources": [
                {
                    "name": "items",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "generic/items",
                        "data_selector": "items",
                        "incremental": {
                            "start_param": "since",
                            "cursor_path": "updated_at",
                            "initial_value": "2000-01-01T00:00:00Z",
                        },
                    },
                }
            ],
        }
    )


class Clock:
    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="?", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=500, help="records per page")
    parser.add_argument("--retry-after", type=int, default=0, help="Retry-After of the 429s")
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    try:
        import dlt
    except ImportError:
        raise SystemExit(
            "rest_sync.py compares with dlt, which is not installed: it comes with the `bench` "
            "extra — .venv/bin/python -m pip install -e '.[bench]'"
        ) from None

    apis = world(args.records)
    apis.faults.rate_limit_every = 25
    apis.faults.retry_after = args.retry_after
    rows: list[tuple[str, str, Clock, int, int]] = []
    with serve_mock_apis(apis) as url, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours = personify_source(url, args.page)
        project = Project(
            ProjectConfig(warehouse=f"duckdb:///{root / 'personify.duckdb'}"), root, root / "p.yml"
        )
        pipeline = dlt.pipeline(
            pipeline_name="bench_rest",
            destination=dlt.destinations.duckdb(str(root / "dlt.duckdb")),
            dataset_name="bench",
            pipelines_dir=str(root / "dlt"),
        )
        with Session(project) as session:
            session.warehouse  # noqa: B018  (open and migrate outside the timing)
            for phase in ("full", "incremental"):
                if phase == "incremental":
                    change_some(apis, 100)
                before = apis.data_requests()
                with Clock() as c:
                    result = sync_rest_source(session, ours)
                rows.append(
                    (
                        "personify",
                        phase,
                        c,
                        result.counts["rows_read"],
                        apis.data_requests() - before,
                    )
                )
                before = apis.data_requests()
                with Clock() as c:
                    info = pipeline.run(dlt_source(url, args.page))
                extracted = pipeline.last_trace.last_normalize_info.row_counts.get("items", 0)
                rows.append(("dlt", phase, c, extracted, apis.data_requests() - before))
                del info
            ours_rows = session.warehouse.fetch(
                "SELECT CAST(product_id AS BIGINT), name, price FROM products ORDER BY 1"
            )
        import duckdb

        con = duckdb.connect(str(root / "dlt.duckdb"), read_only=True)
        dlt_rows = con.sql("SELECT id, name, price FROM bench.items ORDER BY 1").fetchall()
        con.close()
    same = ours_rows == dlt_rows and len(ours_rows) == args.records
    print(
        f"\nREST sync: {args.records:,} records, {args.page} per page, a 429 every 25th request "
        f"(Retry-After: {args.retry_after})\n"
    )
    head = ("tool", "sync", "records", "requests", "wall s", "cpu s", "rec/s")
    print("{:<10} {:<12} {:>9} {:>9} {:>8} {:>8} {:>9}".format(*head))
    for tool, phase, c, n, requests in rows:
        print(
            f"{tool:<10} {phase:<12} {n:>9,} {requests:>9,} {c.wall:>8.2f} {c.cpu:>8.2f} "
            f"{n / c.wall:>9,.0f}"
        )
    for phase in ("full", "incremental"):
        ours_c = next(c for t, p, c, _, _ in rows if t == "personify" and p == phase)
        dlt_c = next(c for t, p, c, _, _ in rows if t == "dlt" and p == phase)
        print(f"{phase}: personify is {dlt_c.wall / ours_c.wall:.1f}x faster than dlt (wall)")
    print(
        f"same rows in both warehouses: {'yes' if same else 'NO'} ({len(ours_rows):,} vs "
        f"{len(dlt_rows):,}); goal: same rows, >= 5x faster"
    )


if __name__ == "__main__":
    main()
