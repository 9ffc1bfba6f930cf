"""Tracking endpoints: requests/s and p99 latency of ``GET /o/{token}.gif`` and ``GET /c/{token}``.

Usage: ``.venv/bin/python benchmarks/engagement_tracking.py [REQUESTS] [--clients N]``
(default 20,000 requests, half pixels and half clicks, 16 keep-alive clients).

A real ``personify serve`` on a fresh scaffolded DuckDB project holding 1,000 sent messages; each
request carries a valid signed token (a distinct client address per request is not possible on
loopback, so the user agent varies: every hit is a new event). Baseline from the same run:
``GET /healthz`` on the same server with the same clients (it checks the warehouse, so it is a
floor of a route doing one warehouse round trip per request, not the bare HTTP stack).
After the run it waits for the events (recorded after each answer) and counts them.

Goal: ≥ 5,000 requests/s per process with p99 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from _load import Load, get_requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PERSONIFY = str(Path(sys.executable).with_name("personify"))
MESSAGES = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", nargs="?", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()

    from tests.e2e.test_serve import free_port, run_json

    from personify.config import load_project
    from personify.delivery.tokens import project_key
    from personify.engagement import sign_click, sign_open
    from personify.scaffold import init_project
    from personify.session import open_session
    from personify.warehouse import table

    work = Path(tempfile.mkdtemp(prefix="engagement-bench-")) / "shop"
    init_project(work)
    sent = datetime.now(UTC) - timedelta(days=1)
    keys = [f"m-{i}" for i in range(MESSAGES)]
    with open_session(work) as session:
        ts = pa.timestamp("us", tz="UTC")
        session.warehouse.load(
            table("messages"),
            pa.table(
                {
                    "idempotency_key": keys,
                    "customer_id": [f"c-{i}" for i in range(MESSAGES)],
                    "journey": ["cart"] * MESSAGES,
                    "step": ["first"] * MESSAGES,
                    "template": ["abandoned_cart"] * MESSAGES,
                    "status": ["sent"] * MESSAGES,
                    "decided_at": pa.array([sent] * MESSAGES, ts),
                    "sent_at": pa.array([sent] * MESSAGES, ts),
                }
            ),
        )
    secret = project_key(load_project(work))
    paths: list[tuple[str, str]] = []
    for n in range(args.requests):
        i = n % MESSAGES
        ua = f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{n}"
        if n % 2:
            token = sign_click(secret, keys[i], f"c-{i}", 0, "https://shop.example/p/1")
            paths.append((f"/c/{token}", ua))
        else:
            paths.append((f"/o/{sign_open(secret, keys[i], f'c-{i}')}.gif", ua))

    port = free_port()
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [PERSONIFY, "serve", "--project", str(work), "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the server did not start; see serve.log")
            time.sleep(0.1)
        base = Load(port, get_requests(port, [("/healthz", "bench")] * args.requests))
        baseline = base.figures(asyncio.run(base.run(args.clients)))
        load = Load(port, get_requests(port, paths))
        tracked = load.figures(asyncio.run(load.run(args.clients)))
        deadline = time.monotonic() + 300
        while True:
            stored = run_json(
                "sql",
                "SELECT count(*) AS n FROM events WHERE source = 'email_tracking'",
                "--project",
                str(work),
            )["rows"][0]["n"]
            if stored >= args.requests or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    print(f"{args.requests:,} requests, {args.clients} clients, {MESSAGES:,} messages\n")
    print(f"{'endpoint':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failures':>10}")
    for name, f in (("/healthz (baseline)", baseline), ("/o + /c (tracking)", tracked)):
        print(
            f"{name:<28}{f['rps']:>10,.0f}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}"
            f"{int(f['failures']):>10}"
        )
    print(f"\nevents recorded: {stored:,} of {args.requests:,}")
    print("goal: >= 5,000 req/s, p99 <= 20 ms")


if __name__ == "__main__":
    main()
