"""CPU cost of continuous mode per event, by how many events one pass applies.

Usage: ``.venv/bin/python benchmarks/continuous_cpu.py [--events 4000] [--users 400]
[--orders N]``

A scaffolded project on a fresh DuckDB file (its segment, rule and journeys, so a pass also
reacts: real-time segments, tags, journey entries). ``--events`` Product Viewed / Product Added
events of ``--users`` identified users are stored, then applied the way
:class:`personify.realtime.continuous.Applier` applies them — profile pass, then
:func:`personify.realtime.reactions.react` — in passes of 1, 10, 100 and 1,000 events (a fresh
warehouse for each size). CPU is the process's own (every thread: DuckDB's too), per event. The
baseline is one pass per event (an idle applier); a busy one coalesces a burst into one pass per
0.5 s. Shared 2-core machine: say so with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from personify import clock
from personify.identity import resolve_batch
from personify.identity.sightings import Scope
from personify.profiles.realtime import apply
from personify.realtime.reactions import react
from personify.scaffold import init_project
from personify.session import open_session
from personify.warehouse import Warehouse, table

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_IN = "message_id IN (SELECT UNNEST(CAST(? AS VARCHAR[])))"


def events(n: int, users: int, visitors: int = 0, *, tracking: bool = False) -> pa.Table:
    """``visitors``: the tracking benchmark's shape instead — Product Viewed events of that many
    anonymous visitors, a third of them also with a user id (every event a new sighting);
    ``tracking``: exactly ``tracking_throughput.py``'s ids (visitors shared by several users:
    one cluster over-merged by them all, split by the guard at every pass)."""
    if tracking:
        return _tracked(n)
    if visitors:
        return _visits(n, users, visitors)
    at = [NOW - timedelta(seconds=n - i) for i in range(n)]
    return pa.table(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "type": ["identify" if i < users else "track" for i in range(n)],
            "event": [
                None if i < users else ("Product Added" if i % 5 else "Product Viewed")
                for i in range(n)
            ],
            "user_id": [f"u{i % users}" for i in range(n)],
            "anonymous_id": [f"a{i % users}" for i in range(n)],
            "timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(at, pa.timestamp("us", tz="UTC")),
            "source": ["web"] * n,
            "properties": [
                json.dumps({"cart_id": f"c{i % users}", "product_id": "p1"}) for i in range(n)
            ],
            "traits": [
                json.dumps({"email": f"u{i % users}@example.com"}) if i < users else None
                for i in range(n)
            ],
        }
    )


def _visits(n: int, users: int, visitors: int) -> pa.Table:
    at = pa.array([NOW - timedelta(seconds=n - i) for i in range(n)], pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "type": ["track"] * n,
            "event": ["Product Viewed"] * n,
            "user_id": [f"u{(i * 3) % users}" if i % 3 == 0 else None for i in range(n)],
            "anonymous_id": [f"a{(i * 7) % visitors}" for i in range(n)],
            "timestamp": at,
            "received_at": at,
            "source": ["web"] * n,
            "properties": [json.dumps({"product_id": f"p-{i % 500}"}) for i in range(n)],
        }
    )


def _tracked(n: int) -> pa.Table:
    """``tracking_throughput.bodies``' events: request ``b``, event ``i``."""
    at = pa.array([NOW - timedelta(seconds=1)] * n, pa.timestamp("us", tz="UTC"))
    pos = [divmod(k, 100) for k in range(n)]
    return pa.table(
        {
            "message_id": [f"m{k}" for k in range(n)],
            "type": ["track"] * n,
            "event": ["Product Viewed"] * n,
            "user_id": [f"user-{(b * 3 + i) % 20_000}" if i % 3 == 0 else None for b, i in pos],
            "anonymous_id": [f"anon-{(b * 7 + i) % 50_000}" for b, i in pos],
            "timestamp": at,
            "received_at": at,
            "source": ["web"] * n,
            "properties": [json.dumps({"product_id": f"p-{i % 500}"}) for _, i in pos],
        }
    )


def prefill(wh: Warehouse, stored: int, *, owned: bool = False) -> None:
    """``stored`` older events of the same visitors (as ``tracking_throughput.py --stored``);
    ``owned``: already stitched to 500,000 customers, a quarter of them email opens (what the
    engagement and category traits of the pass's customers read)."""
    if stored:
        customer = "'cus_' || (i % 500000)" if owned else "NULL"
        event = "CASE WHEN i % 4 = 0 THEN 'Email Opened' ELSE 'Product Viewed' END"
        wh.execute(
            "INSERT INTO events (message_id, type, event, anonymous_id, customer_id, timestamp, "
            f"received_at, source, properties, payload_hash) SELECT 'old-' || i, 'track', {event}, "
            f"'anon-' || (i % 50000), {customer}, TIMESTAMPTZ '2026-01-01' + to_seconds(i), "
            "TIMESTAMPTZ '2026-01-01' + to_seconds(i), 'web', '{}', i FROM range(?) AS t(i)",
            [stored],
        )


def prefill_orders(wh: Warehouse, orders: int) -> None:
    """``orders`` shop orders of 70 % as many customers (emails with stray case and spaces)
    and a fifth as many help-desk tickets."""
    wh.execute(
        "INSERT INTO orders (order_id, email, status, currency, total, created_at, source, "
        "source_customer_id, received_at) SELECT 'o' || i, 'User' || (i % ?) || "
        "'@Example.com ', 'paid', 'EUR', 10, TIMESTAMPTZ '2026-01-01' + to_seconds(i), 'shop', "
        "'s' || (i % ?), TIMESTAMPTZ '2026-01-01' FROM range(?) t(i)",
        [orders * 7 // 10, orders * 7 // 10, orders],
    )
    wh.execute(
        "INSERT INTO tickets (ticket_id, email, subject, status, created_at, source, "
        "received_at) SELECT 't' || i, 'user' || (i % ?) || '@example.com', 'help', 'open', "
        "TIMESTAMPTZ '2026-01-01' + to_seconds(i), 'help', TIMESTAMPTZ '2026-01-01' "
        "FROM range(?) t(i)",
        [orders * 7 // 10, orders // 5],
    )


def run(size: int, args: argparse.Namespace) -> tuple[float, float, int]:
    root = Path(tempfile.mkdtemp(prefix="personify-cpu-")) / "shop"
    init_project(root)
    session = open_session(root)
    try:
        wh = session.warehouse
        if args.orders:  # resolved by a batch first: the passes find them stitched
            prefill_orders(wh, args.orders)
            with clock.frozen(NOW):
                resolve_batch(wh, session.project.config.identity)
        wh.load(
            table("events"),
            events(args.events, args.users, args.visitors, tracking=args.tracking),
        )
        prefill(wh, args.stored, owned=args.owned)
        ids = [f"m{i}" for i in range(args.events)]
        with clock.frozen(NOW):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            passes = 0
            for start in range(0, len(ids), size):
                touched = apply(session, Scope(events=(_IN, (ids[start : start + size],))))
                react(session, touched)
                passes += 1
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        customers = wh.scalar("SELECT count(*) FROM customers")
        assert customers == args.users or ((args.visitors or args.tracking) and customers)
        return cpu / args.events * 1e6, wall, passes
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4_000)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument(
        "--visitors",
        type=int,
        default=0,
        help="the tracking benchmark's shape: Product Viewed events of this many anonymous "
        "visitors, a third with a user id of --users (try --events 5000 --users 2000 "
        "--visitors 5000 --sizes 5000)",
    )
    parser.add_argument(
        "--tracking",
        action="store_true",
        help="exactly the tracking benchmark's events (try --events 100000 --sizes 5000,20000)",
    )
    parser.add_argument(
        "--stored", type=int, default=0, help="older events of the same visitors stored first"
    )
    parser.add_argument(
        "--owned",
        action="store_true",
        help="the --stored events already belong to customers (the traits of a pass's "
        "customers then read them: try --tracking --events 20000 --sizes 2000 --stored 5000000 "
        "--owned)",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=0,
        help="orders (and a fifth as many tickets) stored and resolved first: what a pass's "
        "stitching of orders and tickets costs beside them (try --tracking --events 20000 "
        "--sizes 2000 --orders 1000000)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {s: run(s, args) for s in sizes}
    print(
        f"\n{args.events:,} events of {args.users:,} users"
        f"{f', {args.visitors:,} visitors' if args.visitors else ''}"
        f"{' (the tracking benchmark shape)' if args.tracking else ''}"
        f"{f', {args.stored:,} stored before' if args.stored else ''}"
        f"{' (owned)' if args.owned else ''}"
        f"{f', {args.orders:,} orders stored and resolved' if args.orders else ''}"
        ", DuckDB; load average "
        f"{os.getloadavg()[0]:.1f} (shared 2-core machine)\n"
    )
    print(f"{'events per pass':<18} {'passes':>7} {'CPU µs/event':>13} {'wall s':>8}")
    base = rows[sizes[0]][0]
    for s, (cpu, wall, passes) in rows.items():
        note = "  (baseline)" if s == sizes[0] else f"  {base / cpu:.1f}× cheaper"
        print(f"{s:<18} {passes:>7} {cpu:>13,.0f} {wall:>8.1f}{note}")


if __name__ == "__main__":
    main()
