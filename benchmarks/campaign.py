"""A 100,000-recipient broadcast to the outbox: time and peak RSS.

A scaffolded project on DuckDB holds N customers (each with consent) in a segment; a journey
broadcasts the scaffold's ``re_engagement`` template (MJML layout, CSS inlined, text part) to it.
Measured: deciding (the journey engine entering everyone and queuing one ``messages`` row each),
sending (the batched send loop: consent checked again, profiles read fresh, render, MIME, the
outbox writes one ``.eml`` per key, statuses committed per batch) and a rerun at the same
instant (must send nothing). Baseline, same run, same template and customers: a bare loop that
renders, builds the MIME message and writes the file — no warehouse, no gates, no statuses.
Peak RSS is the process's high-water mark (``ru_maxrss``) after each phase.

    .venv/bin/python benchmarks/campaign.py                 # 100,000 recipients
    .venv/bin/python benchmarks/campaign.py --recipients 10000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from personify import clock
from personify.delivery import build_raw, mailbox, unsubscribe_for
from personify.delivery.outbox import file_name
from personify.journeys import deliver, project_journeys, run_journeys
from personify.messages import build_context, read_customers, render, template_store
from personify.scaffold import init_project
from personify.session import open_session
from personify.warehouse import table

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
VARIABLES: dict[str, Any] = {
    "categories": ["Shoes", "Bags"],
    "new_arrivals": [
        {
            "name": f"Product {i}",
            "url": f"https://shop.example/p{i}",
            "image_url": f"https://shop.example/p{i}.jpg",
            "price": 10.0 + i,
            "category": "Shoes",
        }
        for i in range(6)
    ],
    "shop_url": "https://shop.example/new",
    "currency": "€",
}
JOURNEY = """name: campaign
trigger: {schedule: 2026-03-02T11:00:00Z, segment: everyone}
capped: false
steps:
  - send: re_engagement
    with:
      categories: [Shoes, Bags]
      shop_url: https://shop.example/new
      currency: "€"
      new_arrivals:
"""


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_project(root: Path, n: int, batch: int) -> None:
    init_project(root)
    for path in (root / "journeys").glob("*.yml"):
        path.unlink()
    arrivals = "".join(
        f"        - {{name: {p['name']}, url: {p['url']}, image_url: {p['image_url']}, "
        f"price: {p['price']}, category: {p['category']}}}\n"
        for p in VARIABLES["new_arrivals"]
    )
    (root / "journeys" / "campaign.yml").write_text(JOURNEY + arrivals, encoding="utf-8")
    (root / "segments" / "everyone.sql").write_text(
        "-- name: everyone\nSELECT customer_id FROM customers\n", encoding="utf-8"
    )
    file = root / "personify.yml"
    text = file.read_text(encoding="utf-8")
    text = text[: text.find("# Journeys (journeys/*.yml)")] if "# Journeys (" in text else text
    file.write_text(
        text + f"\njourneys:\n  frequency_cap: null\n  batch_size: {batch}\n", encoding="utf-8"
    )
    ids = [f"c{i:07d}" for i in range(n)]
    with open_session(root) as session:
        wh = session.warehouse
        wh.load(
            table("customers"),
            pa.table(
                {
                    "customer_id": ids,
                    "email": [f"{c}@example.com" for c in ids],
                    "first_name": [f"Name{i}" for i in range(n)],
                    "preferred_categories": ['["Shoes", "Bags"]'] * n,
                    "updated_at": pa.array([NOW] * n, TS),
                }
            ),
        )
        wh.load(
            table("consents"),
            pa.table(
                {
                    "customer_id": ids,
                    "purpose": ["email_marketing"] * n,
                    "channel": ["email"] * n,
                    "status": ["granted"] * n,
                    "source": ["bench"] * n,
                    "updated_at": pa.array([NOW - timedelta(days=30)] * n, TS),
                }
            ),
        )
        wh.load(
            table("segment_memberships"),
            pa.table(
                {
                    "segment": ["everyone"] * n,
                    "customer_id": ids,
                    "entered_at": pa.array([NOW - timedelta(days=1)] * n, TS),
                }
            ),
        )


def campaign(root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with open_session(root) as session, clock.frozen(NOW):
        wh, project = session.warehouse, session.project
        journeys = project_journeys(project)
        t0, c0 = time.perf_counter(), time.process_time()
        run_journeys(wh, project, journeys)
        out["decide_s"] = time.perf_counter() - t0
        out["decide_cpu"] = time.process_time() - c0
        out["decide_mb"] = peak_mb()
        t1, c1 = time.perf_counter(), time.process_time()
        counts = deliver(wh, project, journeys, now=NOW)
        out["send_s"] = time.perf_counter() - t1
        out["send_cpu"] = time.process_time() - c1
        out["send_mb"] = peak_mb()
        out["sent"] = counts.sent
        t2 = time.perf_counter()
        run_journeys(wh, project, journeys)
        again = deliver(wh, project, journeys, now=NOW)
        out["rerun_s"] = time.perf_counter() - t2
        out["rerun_sent"] = again.sent
    out["files"] = sum(1 for _ in (root / "outbox").glob("*.eml"))
    return out


def bare(root: Path, n: int) -> dict[str, float]:
    """Render + MIME + write a file per customer, from customers read once, nothing else."""
    with open_session(root) as session:
        wh, project = session.warehouse, session.project
        template = template_store(project).get("re_engagement")
        settings = project.config.email
        sender = mailbox(settings.from_address, settings.from_name)
        folder = root / "bare"
        folder.mkdir()
        ids = [f"c{i:07d}" for i in range(n)]
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n, 500):
            customers = read_customers(wh, ids[start : start + 500])
            for cid, customer in customers.items():
                unsubscribe = unsubscribe_for(project, cid)
                context = build_context(customer, {**VARIABLES, "unsubscribe_url": unsubscribe.url})
                email = render(template, context)
                key = f"bare:{cid}"
                raw = build_raw(
                    email,
                    sender=sender,
                    recipient=mailbox(customer["email"], customer["first_name"]),
                    date=NOW,
                    key=key,
                    unsubscribe=unsubscribe,
                )
                (folder / file_name(key)).write_bytes(raw)
        return {"bare_s": time.perf_counter() - t0, "bare_cpu": time.process_time() - c0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args()
    n = args.recipients
    root = Path(tempfile.mkdtemp(prefix="personify-campaign-")) / "shop"
    try:
        t0 = time.perf_counter()
        make_project(root, n, args.batch_size)
        setup = time.perf_counter() - t0
        setup_mb = peak_mb()
        result = campaign(root)
        baseline = bare(root, n)
    finally:
        if not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    total = result["decide_s"] + result["send_s"]
    d, sends, b = result["decide_s"], result["send_s"], baseline["bare_s"]
    cd, cs, cb = result["decide_cpu"], result["send_cpu"], baseline["bare_cpu"]
    rows = [
        ("setup: customers, consents, members", setup, None, n / setup, setup_mb),
        ("decide (journey engine)", d, cd, n / d, result["decide_mb"]),
        ("send (render, MIME, outbox, statuses)", sends, cs, n / sends, result["send_mb"]),
        ("campaign = decide + send", total, cd + cs, n / total, result["send_mb"]),
        ("rerun at the same instant", result["rerun_s"], None, 0.0, peak_mb()),
        ("baseline: bare render + MIME + file", b, cb, n / b, peak_mb()),
    ]
    print(f"\n{n:,} recipients, batch {args.batch_size}, CPUs {os.cpu_count()}\n")
    head = ("seconds", "CPU s", "emails/s", "per CPU s", "peak MB")
    print(f"{'phase':<40} {head[0]:>9} {head[1]:>8} {head[2]:>10} {head[3]:>10} {head[4]:>8}")
    for name, seconds, cpu, rate, mb in rows:
        cpu_text = f"{cpu:>8.2f}" if cpu is not None else f"{'':>8}"
        per_cpu = f"{n / cpu:>10,.0f}" if cpu else f"{'':>10}"
        print(f"{name:<40} {seconds:>9.2f} {cpu_text} {rate:>10,.0f} {per_cpu} {mb:>8,.0f}")
    print(
        f"\nsent {int(result['sent']):,}, .eml files {int(result['files']):,}, "
        f"sent by the rerun {int(result['rerun_sent'])}; "
        f"campaign / bare loop = {total / b:.2f}x wall, {(cd + cs) / cb:.2f}x CPU"
    )


if __name__ == "__main__":
    main()
