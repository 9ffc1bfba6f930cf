"""Journey experiments on every backend: a send step's variants and holdout are assigned once per
customer (the documented hash, recorded), each variant's email carries its subject, template and
variables, the holdout receives nothing, and the report shows each arm's uplift over the holdout.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import HELLO, NOW, Shop, parse, people, shop, text_of

from personify.engagement.experiments import HOLDOUT, assign
from personify.engagement.report import journeys_report
from personify.warehouse import table

__all__ = ["shop"]  # the fixture, shared with test_journeys

HOUR = timedelta(hours=1)
BOLD = """---
subject: "Hello {{ customer.first_name }}"
layout: none
---
<p>BOLD {{ note }}</p>
"""
JOURNEY = """trigger: {schedule: 2026-03-02T11:00:00Z, every: 1d, segment: everyone}
steps:
  - id: news
    send: hello
    with: {note: plain-note}
    holdout: 20%
    variants:
      - {name: plain, weight: PLAIN}
      - name: bold
        weight: 1
        template: bold
        subject: "Big news, {{ customer.first_name }}"
        with: {note: bold-note}
"""


def test_variants_and_holdout_are_assigned_once_sent_and_reported(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write("templates/bold.liquid", BOLD)
    shop.segment("everyone")
    shop.write("journeys/weekly.yml", JOURNEY.replace("PLAIN", "1"))
    shop.configure("journeys:\n  frequency_cap: null\n")
    wh = shop.wh
    ids = [f"c{i:03d}" for i in range(200)]
    people(wh, *({"customer_id": c} for c in ids), consent=ids[:-10])  # 10 without consent
    members = [{"segment": "everyone", "customer_id": c, "entered_at": NOW - HOUR} for c in ids]
    wh.load(table("segment_memberships"), arrow_rows("segment_memberships", members))

    counts = shop.run(NOW)
    rows = wh.fetch("SELECT customer_id, status, variant, template, subject, error FROM messages")
    by_customer = {str(r[0]): r[1:] for r in rows}
    assert len(by_customer) == 200
    weights = {"plain": 1.0, "bold": 1.0}
    for customer, (status, variant, template, subject, error) in by_customer.items():
        if customer in ids[-10:]:  # not eligible: not assigned, no variant
            assert status == "skipped_consent" and variant is None
            continue
        expected = assign("weekly.news", customer, weights, holdout=0.2)
        assert variant == expected
        if expected == HOLDOUT:
            assert status == "skipped_holdout" and subject is None
            assert error == "holdout of experiment weekly.news (receives nothing)"
        elif expected == "bold":
            assert (status, template, subject) == ("sent", "bold", "Big news, Ann")
        else:
            assert (status, template, subject) == ("sent", "hello", "Hello Ann")
    arms = Counter(v for s, v, *_ in by_customer.values() if v)
    assert arms[HOLDOUT] + arms["plain"] + arms["bold"] == 190
    assert 20 <= arms[HOLDOUT] <= 60 and arms["plain"] > 40 and arms["bold"] > 40
    assert counts["sent"] == arms["plain"] + arms["bold"]
    assert counts.get("skipped_holdout", 0) == 0  # decided skipped: never reached the sender

    recorded = dict(wh.fetch("SELECT customer_id, variant FROM experiment_assignments"))
    assert recorded == {c: v[1] for c, v in by_customer.items() if v[1] is not None}
    emails = [parse(p) for p in shop.outbox()]
    assert len(emails) == counts["sent"]
    bodies = Counter(
        ("bold" if "BOLD bold-note" in text_of(m) else "plain-note" in text_of(m) and "plain")
        for m in emails
    )
    assert bodies == {"bold": arms["bold"], "plain": arms["plain"]}
    assert {str(m["Subject"]) for m in emails} == {"Big news, Ann", "Hello Ann"}

    # the next occurrence, with other weights: everyone keeps the recorded variant
    shop.write("journeys/weekly.yml", JOURNEY.replace("PLAIN", "5"))
    shop.run(NOW + 24 * HOUR)
    second = wh.fetch(
        "SELECT customer_id, variant FROM messages WHERE trigger_key = "
        "(SELECT max(trigger_key) FROM messages) AND variant IS NOT NULL"
    )
    assert dict(second) == recorded
    assert wh.scalar("SELECT count(*) FROM experiment_assignments") == 190

    # orders: a third of each arm buys within a day of its assignment (none outside the window)
    buyers = [c for c, v in recorded.items() if int(c[1:]) % 3 == 0]
    orders = [
        {
            "order_id": f"o-{c}",
            "customer_id": c,
            "status": "paid",
            "total": 20.0,
            "created_at": NOW + 2 * HOUR,
            "source": "shop",
        }
        for c in buyers
    ]
    wh.load(table("orders"), arrow_rows("orders", orders))
    report = journeys_report(wh, shop.session.project, NOW + 48 * HOUR)
    steps = {(s.step, s.variant): s for s in report.steps}
    holdout = steps[("news", HOLDOUT)]
    assert holdout.sends == 0 and holdout.experiment == "weekly.news"
    assert holdout.assigned == arms[HOLDOUT] and holdout.uplift is None
    bought = Counter(recorded[c] for c in buyers)
    assert holdout.converted == bought[HOLDOUT]
    for name in ("plain", "bold"):
        row = steps[("news", name)]
        assert row.sends == 2 * arms[name]  # two occurrences sent
        assert row.assigned == arms[name] and row.converted == bought[name]
        assert row.uplift is not None
        assert row.uplift.difference == pytest.approx(
            bought[name] / arms[name] - bought[HOLDOUT] / arms[HOLDOUT]
        )
        assert row.uplift.low < row.uplift.difference < row.uplift.high
        assert not row.uplift.conclusive  # same conversion pattern in every arm


def test_a_holdout_alone_holds_out_that_share_of_the_step(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.segment("everyone")
    shop.write(
        "journeys/weekly.yml",
        "trigger: {schedule: 2026-03-02T11:00:00Z, segment: everyone}\n"
        "steps:\n  - send: hello\n    with: {note: hi}\n    holdout: 0.5\n",
    )
    shop.configure("journeys:\n  frequency_cap: null\n")
    wh = shop.wh
    ids = [f"c{i:03d}" for i in range(40)]
    people(wh, *({"customer_id": c} for c in ids), consent=ids)
    members = [{"segment": "everyone", "customer_id": c, "entered_at": NOW - HOUR} for c in ids]
    wh.load(table("segment_memberships"), arrow_rows("segment_memberships", members))
    counts = shop.run(NOW)
    variants = dict(wh.fetch("SELECT customer_id, variant FROM messages"))
    expected = {c: assign("weekly.step1", c, {"control": 1.0}, 0.5) for c in ids}
    assert variants == expected
    assert counts["sent"] == sum(v == "control" for v in expected.values()) == len(shop.outbox())
