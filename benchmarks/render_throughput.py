"""Personalized emails per second: decide + render + MIME on the abandoned-cart template.

Usage: ``.venv/bin/python benchmarks/render_throughput.py [--customers N] [--batch B]
[--rounds R] [--profile]`` (default 5,000 customers in batches of 500, best of 3 rounds;
``--profile`` then prints where one more tracked run's time went, by function).

A scaffolded project (``personify init``: the ``abandoned_cart`` template in ``layouts/base``,
a signing key) on a temporary DuckDB file holding N customers (names partly non-ASCII). Each
email has its own 4 cart items, 4 recommendations and a discount code. Two figures from the same
run, on the same variables, taking turns batch by batch (the machine is shared and noisy: read
the ratio):

* **bare python-liquid** — a plain ``liquid.Environment`` (autoescape, strict undefined) renders
  the same three parsed templates per customer — subject, body, and the compiled MJML layout
  around the body — from profile dicts already in memory: the floor of any Liquid renderer;
* **Personify** — ``prepare_batch`` per batch: every profile of the batch read fresh in one
  query, the unsubscribe token signed, subject, body and layout rendered (strict, autoescaped,
  resource-limited), the layout's CSS inlined, the plain-text part, the MIME wire bytes — with
  open/click tracking on (the default: each link signed, the open pixel), and again with
  ``engagement.tracking: false`` to show what tracking costs.

CPU seconds (the process's own) are printed beside wall seconds: on a shared machine they are
the steadier figure, and emails per CPU-second is the rate one idle core would give.

Goal: ≥ 2,500 emails/s per process and ≥ 80 % of the bare loop.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import platform
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
from liquid import Environment, Markup, StrictUndefined

from personify.config import load_project
from personify.delivery import Envelope, prepare_batch
from personify.journeys.content import _code as _discount
from personify.messages import TemplateStore, template_store
from personify.messages.liquid_env import money
from personify.messages.templates import _compile_mjml, _front_matter
from personify.scaffold import init_project
from personify.warehouse import connect, table

FIRST = ["Ann", "Zoë", "Björn", "Li", "Maria", "Ömer", "Jean-Luc", "Sam"]
EXPIRES = datetime(2026, 4, 7, 9, 0, tzinfo=UTC)
LAST = ["Lee", "Ünal", "O'Neil", "Nakamura", "García", "Smith", "Dubois", "Kowalski"]
WHEN = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def customers(n: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "customer_id": f"c{i:07d}",
                "email": f"customer{i}@example.org",
                "first_name": FIRST[i % len(FIRST)],
                "last_name": LAST[(i // 8) % len(LAST)],
                "preferred_categories": '["shoes", "bags"]',
                "engagement_score": float(i % 100),
                "updated_at": WHEN,
            }
            for i in range(n)
        ]
    )


def variables(i: int) -> dict[str, Any]:
    """Each customer's own cart, recommendations and code (as a journey step passes them)."""
    return {
        "cart": {
            "url": f"https://shop.example/cart/{i}",
            "items": [
                {
                    "name": f"Trail Boot {i % 97}-{k}",
                    "url": f"https://shop.example/p/{(i + k) % 500}",
                    "image_url": f"https://shop.example/img/{(i + k) % 500}.jpg",
                    "price": f"{19 + (i + k) % 80}.90",
                    "quantity": 1 + k % 2,
                }
                for k in range(4)
            ],
        },
        "recommendations": [
            {
                "name": f"Rain Jacket {(i * 7 + k) % 300}",
                "url": f"https://shop.example/p/r{(i * 7 + k) % 300}",
                "image_url": f"https://shop.example/img/r{(i * 7 + k) % 300}.jpg",
                "price": f"{29 + k}.00",
            }
            for k in range(4)
        ],
        "discount": _discount(
            {
                "code": f"SAVE-{i:06X}",
                "label": "10% off",
                "value": 10.0,
                "kind": "percent",
                "currency": "EUR",
                "expires_at": EXPIRES,
            },
            UTC,
        ),  # as a journey gives it: prints "07 April 2026"
        "currency": "€",
    }


def bare_templates(folder: Path) -> tuple[Any, Any, Any]:
    """The same subject, body and compiled layout, parsed once by a plain environment."""
    env = Environment(autoescape=True, undefined=StrictUndefined)
    text_env = Environment(undefined=StrictUndefined)
    env.filters["money"] = money  # the scaffold's templates format prices with it
    meta, body, _ = _front_matter((folder / "abandoned_cart.liquid").read_text(encoding="utf-8"))
    layout_html = _compile_mjml((folder / "layouts" / "base.mjml").read_text(), "base.mjml")
    return (
        text_env.from_string(meta["subject"]),
        env.from_string(body),
        env.from_string(layout_html),
    )


def run_bare(
    templates: tuple[Any, Any, Any], rows: list[dict[str, Any]], vs: list[Any]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the bare loop."""
    subject_t, body_t, layout_t = templates
    started, cpu = time.perf_counter(), time.process_time()
    for row, v in zip(rows, vs, strict=True):
        context = {"customer": row, "unsubscribe_url": "https://x/unsubscribe/t", **v}
        subject = subject_t.render(**context)
        body = body_t.render(**context)
        layout_t.render(**context, subject=subject, content=Markup(body))
    return time.perf_counter() - started, time.process_time() - cpu


def run_personify(
    wh: Any, project: Any, store: TemplateStore, items: list[Any], batch: int
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, envelopes made) of the full path."""
    sent = 0
    started, cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(items), batch):
        out = prepare_batch(wh, project, "abandoned_cart", items[at : at + batch], store=store)
        sent += sum(isinstance(e, Envelope) for e in out)
    return time.perf_counter() - started, time.process_time() - cpu, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000, help="emails per round")
    parser.add_argument("--batch", type=int, default=500, help="emails per prepare_batch call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then profile one more tracked run (cProfile; functions by own time)",
    )
    args = parser.parse_args()
    n = args.customers

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        init_project(root)
        os.environ.setdefault("PERSONIFY_SECRET_KEY", "bench-secret")
        project = load_project(root)
        wh = connect(f"duckdb:///{root / 'warehouse.duckdb'}")
        wh.load(table("customers"), customers(n))
        store = template_store(project)
        # the same project with open/click tracking off: what link rewriting costs
        off = msgspec.structs.replace(project.config.engagement, tracking=False)
        untracked = dataclasses.replace(
            project, config=msgspec.structs.replace(project.config, engagement=off)
        )
        items = [(f"abandoned_cart:wait:c{i:07d}:{i}", f"c{i:07d}", variables(i)) for i in range(n)]
        rows = list(wh.fetch_arrow("SELECT * FROM customers ORDER BY customer_id").to_pylist())
        vs = [v for _, _, v in items]
        bare_t = bare_templates(root / "templates")
        run_personify(wh, project, store, items[:200], args.batch)  # warm: parse, compile
        run_bare(bare_t, rows[:200], vs[:200])
        bare_s: list[tuple[float, float]] = []
        ours_s: list[tuple[float, float]] = []
        plain_s: list[tuple[float, float]] = []
        b = args.batch
        for _ in range(args.rounds):
            # the three paths take turns batch by batch (a second or less each), so a shared
            # machine's changing load falls on all three alike
            totals = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
            sent = 0
            for at in range(0, n, b):
                bare = run_bare(bare_t, rows[at : at + b], vs[at : at + b])
                *ours, made = run_personify(wh, project, store, items[at : at + b], b)
                *plain, _ = run_personify(wh, untracked, store, items[at : at + b], b)
                sent += made
                for total, run in zip(totals, (bare, ours, plain), strict=True):
                    total[0] += run[0]
                    total[1] += run[1]
            assert sent == n, f"only {sent} of {n} emails prepared"
            bare_s.append((totals[0][0], totals[0][1]))
            ours_s.append((totals[1][0], totals[1][1]))
            plain_s.append((totals[2][0], totals[2][1]))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run_personify(wh, project, store, items, args.batch)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        wh.close()

    print(f"\nabandoned_cart, {n:,} customers, batches of {args.batch}, best of {args.rounds}")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"{'path':<44}{'wall s':>8}{'emails/s':>10}{'CPU s':>8}{'emails/CPU s':>14}")
    rows_out = [
        ("bare python-liquid (subject+body+layout)", bare_s),
        ("Personify (read+sign+render+CSS+text+MIME)", ours_s),
        ("  the same without open/click tracking", plain_s),
    ]
    for label, runs in rows_out:
        wall = min(w for w, _ in runs)
        cpu = min(c for _, c in runs)
        print(f"{label:<44}{wall:>8.2f}{n / wall:>10,.0f}{cpu:>8.2f}{n / cpu:>14,.0f}")
    wall_ratio = min(w for w, _ in bare_s) / min(w for w, _ in ours_s)
    cpu_ratio = min(c for _, c in bare_s) / min(c for _, c in ours_s)
    rate = n / min(w for w, _ in ours_s)
    plain_wall = min(w for w, _ in bare_s) / min(w for w, _ in plain_s)
    plain_cpu = min(c for _, c in bare_s) / min(c for _, c in plain_s)
    cpu_rate = n / min(c for _, c in ours_s)
    print(f"Personify / bare: {wall_ratio:.0%} wall, {cpu_ratio:.0%} CPU (goal ≥ 80 %)")
    print(f"  without open/click tracking / bare: {plain_wall:.0%} wall, {plain_cpu:.0%} CPU")
    print(f"Personify emails/s (wall, one process): {rate:,.0f} (goal ≥ 2,500)")
    print(f"Personify emails per CPU-second: {cpu_rate:,.0f} (the wall rate on an idle core)")
    walls = [w for w, _ in ours_s]
    spread = statistics.pstdev(walls) / statistics.mean(walls) if len(walls) > 1 else 0.0
    print(f"round-to-round spread of Personify's wall time: {spread:.0%}")


if __name__ == "__main__":
    main()
