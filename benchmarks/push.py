"""Destinations (reverse ETL) at scale: a model over N customers pushed to a real local mock CRM
(HubSpot-style batch upsert, uvicorn on loopback) on DuckDB.

Three pushes: the first sends every record (100 a request), the second finds nothing changed,
the third after 1 % of the customers changed. Baselines in the same run: the model alone (its
rows counted in the warehouse, no diff), and the same records POSTed to the same endpoint by a
bare httpx client with nothing computed or recorded — what sending costs by itself.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from personify import clock
from personify.config import BearerAuth, Project, ProjectConfig, RestClient, RestDestination, Secret
from personify.demo.mock_apis import TOKEN, MockApis, serve_mock_apis
from personify.destinations import push_destinations
from personify.session import Session
from personify.warehouse import table

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MODEL = (
    "SELECT customer_id, email, engagement_score AS engagement, lifecycle_stage, total_spent "
    "FROM customer_data WHERE email IS NOT NULL"
)


def customers(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    stages = np.array(["new", "active", "lapsing", "lapsed"])
    return pa.table(
        {
            "customer_id": [f"cus_{i:08d}" for i in range(n)],
            "email": [f"c{i}@example.org" for i in range(n)],
            "engagement_score": rng.uniform(0, 100, n).round(2),
            "lifecycle_stage": stages[rng.integers(0, 4, n)],
            "total_spent": rng.uniform(0, 2000, n).round(2),
            "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def bare_send(url: str, data: pa.Table) -> float:
    """The baseline: the same records POSTed 100 a request, nothing else."""
    rows = data.select(["email", "engagement_score", "lifecycle_stage", "total_spent"]).to_pylist()
    records = [
        {
            "idProperty": "email",
            "id": r["email"],
            "properties": {
                "engagement": r["engagement_score"],
                "lifecycle_stage": r["lifecycle_stage"],
                "total_spent": r["total_spent"],
            },
        }
        for r in rows
    ]
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for i in range(0, len(records), 100):
            client.post(
                "/crm/v3/objects/contacts/batch/upsert", json={"inputs": records[i : i + 100]}
            ).raise_for_status()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n = args.customers
    data = customers(n, args.seed)
    apis = MockApis()
    with tempfile.TemporaryDirectory() as tmp, serve_mock_apis(apis) as url:
        root = Path(tmp)
        destination = RestDestination(
            name="crm",
            model=MODEL,
            key="email",
            preset="hubspot_contacts",
            client=RestClient(
                base_url=url, auth=BearerAuth(token=Secret(TOKEN)), requests_per_second=100_000.0
            ),
        )
        config = ProjectConfig(
            warehouse=f"duckdb:///{root / 'w.duckdb'}",
            signing_key=Secret("bench"),
            destinations=(destination,),
        )
        with Session(Project(config, root, root / "personify.yml")) as session:
            wh = session.warehouse
            wh.load(table("customers"), data)
            t0 = time.perf_counter()
            wh.execute(f"CREATE TEMP TABLE _model AS {MODEL}")  # the model materialized
            model_s = time.perf_counter() - t0
            wh.execute("DROP TABLE _model")
            figures = []
            for label, change in (
                ("first push", 0.0),
                ("nothing changed", 0.0),
                ("1 % changed", 0.01),
            ):
                if change:
                    k = int(n * change)
                    wh.execute(
                        f"UPDATE customers SET engagement_score = engagement_score + 1 "
                        f"WHERE customer_id IN (SELECT customer_id FROM customers "
                        f"ORDER BY customer_id LIMIT {k})"
                    )
                t0, c0 = time.perf_counter(), time.process_time()
                with clock.frozen(NOW):
                    (result,) = push_destinations(session)
                assert result.error is None, result.error
                figures.append(
                    (label, time.perf_counter() - t0, time.process_time() - c0, result.counts)
                )
        assert apis.upserts == n + int(n * 0.01)  # every record once, the changed ones again
        bare = bare_send(url, data)
    print(f"| figure ({n:,} customers, DuckDB) | value | baseline in the same run |")
    print("|---|---|---|")
    for label, wall, cpu, counts in figures:
        sent = counts.get("rows_sent", 0)
        rate = f", {sent / wall:,.0f} records/s" if sent else ""
        base = (
            f"bare httpx POSTs of the same {n:,} records: {bare:.2f} s ({n / bare:,.0f}/s)"
            if label == "first push"
            else f"the model alone, materialized: {model_s:.2f} s"
        )
        print(
            f"| {label}: {sent:,} sent of {counts['rows_changed']:,} changed | "
            f"{wall:.2f} s wall, {cpu:.2f} CPU-s{rate} | {base} |"
        )


if __name__ == "__main__":
    main()
