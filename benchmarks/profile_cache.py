"""Send-time profile lookups through the profile cache, p50/p99.

Usage: ``.venv/bin/python benchmarks/profile_cache.py [--customers N] [--lookups L]
[--redis URL]`` (default 1,000,000 customers, 20,000 lookups, Redis at 127.0.0.1:6379 if it
answers).

``customers`` rows for N synthetic customers are loaded into a temporary DuckDB file. Then L
single-customer lookups (:func:`personify.messages.context.read_customers`, what a send asks) of
random customers, timed one by one: the baseline without a cache (a warehouse query each), the
in-process cache (``cache: memory``) warm, and the Redis-coherent cache (``cache: redis://…``)
warm. Figures: p50, p99 and lookups per second; the machine is shared and noisy.

Goal: p99 ≤ 1 ms cached at 1M customers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from personify.config import Project, parse_config
from personify.messages.context import read_customers
from personify.realtime import profile_cache
from personify.realtime.cache import close_cache
from personify.warehouse import connect, table

GOAL_MS = 1.0


def load(url: str, n: int) -> None:
    wh = connect(url)
    now = datetime(2026, 3, 31, tzinfo=UTC)
    step = 200_000
    for start in range(0, n, step):
        ids = range(start, min(n, start + step))
        wh.load(
            table("customers"),
            pa.table(
                {
                    "customer_id": [f"cus_{i:08d}" for i in ids],
                    "email": [f"c{i}@example.com" for i in ids],
                    "first_name": ["Ann"] * len(ids),
                    "order_count": [i % 7 for i in ids],
                    "total_spent": [float(i % 500) for i in ids],
                    "updated_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
                }
            ),
        )
    wh.close()


def timed(url: str, cache: str | None, ids: list[str]) -> list[float]:
    wh = connect(url)
    try:
        if cache is not None:
            config = parse_config(f"warehouse: {url}\ncache: {cache}\n")
            proj = Project(config, Path("."), Path("x"))
            profile_cache(wh, proj)
            for i in range(0, len(ids), 1000):  # warm, a thousand at a time
                read_customers(wh, ids[i : i + 1000])
        out = []
        for cid in ids:
            t = time.perf_counter()
            row = read_customers(wh, [cid])
            out.append((time.perf_counter() - t) * 1000)
            assert row, cid
        return out
    finally:
        close_cache(wh)
        wh.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{tmp}/bench.duckdb"
        t = time.perf_counter()
        load(url, args.customers)
        print(f"{args.customers:,} customers loaded in {time.perf_counter() - t:.1f} s")
        rng = random.Random(7)
        ids = [f"cus_{rng.randrange(args.customers):08d}" for _ in range(args.lookups)]
        runs: list[tuple[str, str | None, list[str]]] = [
            ("no cache (baseline)", None, ids[: max(1, len(ids) // 10)]),
            ("cache: memory", "memory", ids),
        ]
        try:
            import redis

            redis.Redis.from_url(args.redis, socket_timeout=1).ping()
            prefix = f"bench-{uuid.uuid4().hex[:8]}"
            runs.append(("cache: redis (coherent)", f"{args.redis}?prefix={prefix}", ids))
        except Exception as e:  # no Redis: that row is skipped
            print(f"redis skipped ({type(e).__name__})")
        goal = f"goal p99 ≤ {GOAL_MS} ms"
        print(f"\n| lookup path | lookups | p50 ms | p99 ms | lookups/s | {goal} |")
        print("|---|---:|---:|---:|---:|---|")
        for name, cache, sample in runs:
            ms = timed(url, cache, sample)
            q = statistics.quantiles(ms, n=100)
            p50, p99 = q[49], q[98]
            rate = len(ms) / (sum(ms) / 1000)
            met = "met" if cache and p99 <= GOAL_MS else ("—" if not cache else "not met")
            print(f"| {name} | {len(ms):,} | {p50:.3f} | {p99:.3f} | {rate:,.0f} | {met} |")


if __name__ == "__main__":
    main()
