"""Offers per second: cart contents, recommendations and a discount code for abandoned carts.

Usage: ``.venv/bin/python benchmarks/offers.py [--customers N] [--batch B] [--sample S]``
(default 20,000 customers, batches of 500, a 200-cart sample for the baseline).

A demo world of N customers (web sessions, orders, catalogue) imported, resolved and profiled by
the real pipeline on a temporary DuckDB file. Every cart of the world that has a ``Product
Added`` then gets what the abandoned-cart email needs — ``cart_contents``,
``recommend_for_carts`` (k = 4) and ``issue_codes`` — asked once per batch of B carts, as the
journeys' send loop asks. Baseline in the same run: the same three calls one cart at a time (what
per-customer queries would cost), on a sample. Figures: carts per second each way, and each
function's share. The machine is shared and noisy: read the ratio.

Goal: the batch path ≥ 2,500 carts/s (offers never the bottleneck of a 2,500 emails/s send).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from personify import clock, pipeline
from personify.demo import make_demo_project
from personify.demo.project import configure_project
from personify.offers import cart_contents, issue_codes, recommend_for_carts, snapshot
from personify.session import Session, open_session

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
GOAL = 2_500


def world(root: Path, customers: int) -> None:
    make_demo_project(root, customers=customers, seed=3, now=NOW)
    configure_project(root, seed=3, customers=customers, now=NOW, web_via_api=False)
    upstream = tuple(s for s in pipeline.STAGES if s[0] in {"sync", "identity", "profiles"})
    with clock.frozen(NOW), open_session(root) as session:
        pipeline.run(session, stages=upstream)


def carts_of(session: Session) -> dict[str, str | None]:
    rows = session.warehouse.fetch(
        "SELECT properties->>'cart_id', min(customer_id) FROM events WHERE type = 'track' "
        "AND event = 'Product Added' AND properties->>'cart_id' IS NOT NULL "
        "AND timestamp > CAST(? AS TIMESTAMPTZ) - INTERVAL '90 days' GROUP BY 1 ORDER BY 1",
        [NOW],
    )
    return {str(c): u for c, u in rows}


def offers_for(session: Session, carts: dict[str, str | None], tag: str) -> dict[str, float]:
    """The three calls for ``carts``; seconds spent in each."""
    wh, spent = session.warehouse, {}
    t = time.perf_counter()
    cart_contents(wh, list(carts), now=NOW)
    spent["cart_contents"] = time.perf_counter() - t
    t = time.perf_counter()
    recommend_for_carts(wh, carts, now=NOW)
    spent["recommend_for_carts"] = time.perf_counter() - t
    t = time.perf_counter()
    requests = [(f"{tag}:{c}", u or "anonymous", "cart_rescue") for c, u in carts.items()]
    issue_codes(wh, session.project, requests, now=NOW)
    spent["issue_codes"] = time.perf_counter() - t
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        t = time.perf_counter()
        world(root, args.customers)
        print(f"world: {args.customers:,} customers in {time.perf_counter() - t:.1f} s")
        with clock.frozen(NOW), open_session(root) as session:
            carts = carts_of(session)
            items = list(carts.items())
            totals: dict[str, float] = {}
            for lo in range(0, len(items), args.batch):
                spent = offers_for(session, dict(items[lo : lo + args.batch]), "batch")
                for name, s in spent.items():
                    totals[name] = totals.get(name, 0.0) + s
            batch_s = sum(totals.values())
            held: dict[str, float] = {}
            t = time.perf_counter()
            with snapshot(session.warehouse, now=NOW):
                held["snapshot"] = time.perf_counter() - t
                for lo in range(0, len(items), args.batch):
                    spent = offers_for(session, dict(items[lo : lo + args.batch]), "held")
                    for name, s in spent.items():
                        held[name] = held.get(name, 0.0) + s
            held_s = sum(held.values())
            sample = items[: args.sample]
            single: dict[str, float] = {}
            for cart, customer in sample:
                for name, s in offers_for(session, {cart: customer}, "single").items():
                    single[name] = single.get(name, 0.0) + s
            single_s = sum(single.values())
    batch_rate, single_rate = len(items) / batch_s, len(sample) / single_s
    held_rate = len(items) / held_s
    print(f"machine: {platform.machine()}, {platform.python_version()}, DuckDB")
    print(f"carts: {len(items):,} (batches of {args.batch}); baseline sample: {len(sample)}")
    print()
    names = ["snapshot", *totals]
    print(f"| path | carts/s | {' | '.join(names)} |")
    print(f"|---|---:|{'---:|' * len(names)}")
    for label, rate, parts, total in (
        (f"batches of {args.batch} in a snapshot", held_rate, held, held_s),
        (f"batches of {args.batch}", batch_rate, totals, batch_s),
        ("one cart at a time (baseline)", single_rate, single, single_s),
    ):
        shares = " | ".join(f"{100 * parts[n] / total:.0f} %" if n in parts else "–" for n in names)
        print(f"| {label} | {rate:,.0f} | {shares} |")
    print()
    print(
        f"batches / baseline: {batch_rate / single_rate:.0f}x; snapshot / batches: "
        f"{held_rate / batch_rate:.1f}x"
    )
    verdict = "met" if held_rate >= GOAL else "NOT met"
    print(f"goal ≥ {GOAL:,} carts/s (in a snapshot): {verdict}")


if __name__ == "__main__":
    main()
