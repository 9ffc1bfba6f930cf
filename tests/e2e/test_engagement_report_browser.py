"""``personify report journeys --out report.html`` in real headless Chromium: a journey with two
variants and a holdout runs, people click and buy (more in the variants than in the holdout), and
the page opens without console errors, draws its three charts (funnel, uplift with intervals,
revenue over time), and its screenshot — decoded by the browser itself — is not blank and shows
the charts' colours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from personify import clock
from personify.engagement import Hit, TrackingClaim, record
from personify.engagement.experiments import HOLDOUT
from personify.journeys import deliver, project_journeys, run_journeys
from personify.scaffold import init_project
from personify.session import open_session
from personify.warehouse import table
from tests.conformance.audience_data import arrow_rows, load_consents, load_customers
from tests.e2e.browser import (
    chromium,
    chromium_or_skip,
    count_colours,
    html_report,
    page_errors,
)
from tests.e2e.cli import personify_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HELLO = """---
subject: "Hello {{ customer.first_name }}"
layout: none
---
<p>Hello {{ customer.first_name }}, {{ note }} <a href="https://shop.example/new">new in</a></p>
"""
JOURNEY = """trigger: {schedule: 2026-03-02T11:00:00Z, segment: everyone}
steps:
  - id: news
    send: hello
    with: {note: plain}
    holdout: 25%
    variants:
      - {name: plain}
      - {name: bold, subject: "Big news, {{ customer.first_name }}", with: {note: bold}}
"""
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
BUYS = {HOLDOUT: 0.05, "plain": 0.12, "bold": 0.25}
"""Share of each arm that buys (a real effect of the email, built in)."""


def _world(root: Path) -> None:
    init_project(root)
    (root / "templates" / "hello.liquid").write_text(HELLO, encoding="utf-8")
    (root / "journeys" / "weekly.yml").write_text(JOURNEY, encoding="utf-8")
    (root / "segments" / "everyone.sql").write_text(
        "-- name: everyone\nSELECT customer_id FROM customers\n", encoding="utf-8"
    )
    ids = [f"c{i:04d}" for i in range(1200)]
    with open_session(root) as session:
        wh = session.warehouse
        load_customers(
            wh, [{"customer_id": c, "email": f"{c}@example.com", "first_name": "Ann"} for c in ids]
        )
        load_consents(wh, [(c, "email_marketing", "granted") for c in ids])
        members = [
            {"segment": "everyone", "customer_id": c, "entered_at": NOW - timedelta(hours=1)}
            for c in ids
        ]
        wh.load(table("segment_memberships"), arrow_rows("segment_memberships", members))
        with clock.frozen(NOW):
            journeys = project_journeys(session.project)
            run_journeys(wh, session.project, journeys)
            deliver(wh, session.project, journeys, now=NOW)
        rows = wh.fetch("SELECT idempotency_key, customer_id, variant FROM messages")
        orders: list[dict[str, Any]] = []
        for n, (key, customer, variant) in enumerate(sorted(rows)):
            share = BUYS[str(variant)]
            buys = (n * 7919 % 1000) / 1000 < share
            if buys and variant != HOLDOUT:  # the buyer followed the email's link first
                claim = TrackingClaim(
                    "click", str(key), str(customer), 0, "https://shop.example/new"
                )
                at = NOW + timedelta(hours=2 + n % 30)
                record(wh, session.project, Hit(claim, at, BROWSER, "203.0.113.9"))
            if buys:
                orders.append(
                    {
                        "order_id": f"o-{customer}",
                        "customer_id": customer,
                        "status": "paid",
                        "total": 40.0 + n % 25,
                        "created_at": NOW + timedelta(hours=3 + n % 30),
                        "source": "shop",
                    }
                )
        wh.load(table("orders"), arrow_rows("orders", orders))


def test_the_journeys_report_opens_in_chromium_with_its_charts(tmp_path: Path) -> None:
    chromium_or_skip()

    root = tmp_path / "shop"
    _world(root)
    out = tmp_path / "report.html"
    at = (NOW + timedelta(days=3)).isoformat()
    html_report(out, "report", "journeys", "--project", str(root), "--now", at)
    doc = personify_json("report", "journeys", "--project", str(root), "--now", at)
    arms = {s["variant"]: s for s in doc["steps"] if s["step"] == "news"}
    assert arms[HOLDOUT]["sends"] == 0 and arms["bold"]["uplift"]["conclusive"]
    assert arms["bold"]["uplift"]["difference"] > arms["plain"]["uplift"]["difference"] > 0

    with chromium() as browser:
        tab = browser.new_page(viewport={"width": 1100, "height": 900})
        errors = page_errors(tab)
        tab.goto(out.as_uri())
        drawn = tab.evaluate(
            """() => ({
            charts: [...document.querySelectorAll('svg.chart')].map(s => s.classList[1]),
            bars: document.querySelectorAll('svg.funnel rect.bar').length,
            points: document.querySelectorAll('svg.uplift circle.point').length,
            intervals: [...document.querySelectorAll('svg.uplift line.interval')]
              .map(l => l.getBBox().width),
            lines: document.querySelectorAll('svg.revenue polyline.line').length,
            sizes: [...document.querySelectorAll('svg.chart')]
              .map(s => s.getBoundingClientRect().height),
        })"""
        )
        shot = tab.screenshot(full_page=True)
        pixels = count_colours(
            browser, shot, {"blue": (0x3B, 0x6F, 0xD4), "green": (0x3A, 0xA3, 0x7A)}, near=12
        )
    assert errors == []
    assert drawn["charts"] == ["funnel", "uplift", "revenue"], json.dumps(drawn)
    assert drawn["bars"] == 5 * 3  # five stages × (plain, bold, holdout)
    assert drawn["points"] == 2 and all(w > 5 for w in drawn["intervals"])
    assert drawn["lines"] == 1 and all(h > 100 for h in drawn["sizes"])
    assert pixels["width"] >= 1000 and pixels["height"] > 900
    assert pixels["ink"] > 20_000  # text, bars, lines: not a blank page
    assert pixels["blue"] > 200 and pixels["green"] > 50  # the funnel's sends, the conclusive point
