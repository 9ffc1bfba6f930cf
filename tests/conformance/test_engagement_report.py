"""Attribution and the journeys report on every backend: the documented touch wins (last touch
by default, first touch when configured), machine touches and excluded orders never convert,
orders outside the window are not attributed, and the figures per journey/step/variant."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa

from personify.config import EngagementConfig, Project, load_project
from personify.engagement import Hit, TrackingClaim, record
from personify.engagement.record import record_feedback
from personify.engagement.report import (
    attributed,
    experiments,
    journey_headlines,
    journeys_report,
)
from personify.warehouse import Warehouse, table

T = datetime(2026, 3, 1, 12, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
TSA = pa.timestamp("us", tz="UTC")
NOW = T + timedelta(days=30)


def _load(wh: Warehouse, name: str, rows: list[dict[str, object]]) -> None:
    t = table(name)
    names = list(dict.fromkeys(c for r in rows for c in r))
    data = pa.table(
        {
            c: pa.array(
                [r.get(c) for r in rows], TSA if t.column(c).type == "TIMESTAMPTZ" else None
            )
            for c in names
        }
    )
    wh.load(t, data)


def _message(key: str, customer: str, step: str, variant: str | None) -> dict[str, object]:
    return {
        "idempotency_key": key,
        "customer_id": customer,
        "journey": "cart",
        "step": step,
        "variant": variant,
        "template": "abandoned_cart",
        "status": "sent",
        "decided_at": T,
        "sent_at": T,
    }


def _world(wh: Warehouse, project: Project) -> None:
    _load(
        wh,
        "messages",
        [
            _message("m-1", "c-1", "first", "A"),
            _message("m-2", "c-2", "first", "B"),
            _message("m-3", "c-1", "second", None),
            _message("m-4", "c-3", "first", "A"),
        ],
    )
    _load(
        wh,
        "suppressions",
        [
            {
                "subject_hash": "h3",
                "kind": "email",
                "customer_id": "c-3",
                "reason": "bounced",
                "created_at": T + timedelta(minutes=1),
            }
        ],
    )

    def hit(kind: str, key: str, who: str, hours: float, agent: str = BROWSER) -> None:
        claim = TrackingClaim(
            "open" if kind == "open" else "click",
            key,
            who,
            0 if kind == "click" else None,
            "https://shop.example/" if kind == "click" else None,
        )
        record(wh, project, Hit(claim, T + timedelta(hours=hours), agent, "203.0.113.5"))

    hit("open", "m-1", "c-1", 0.5)
    hit("click", "m-1", "c-1", 1)
    hit("click", "m-3", "c-1", 5)
    hit("open", "m-2", "c-2", 1)
    hit("click", "m-2", "c-2", 1, agent="Proofpoint URL Defense")  # a scanner: not a touch
    hit("open", "m-4", "c-3", 1, agent="Mozilla/5.0")  # Apple's proxy: not an open
    orders = [
        ("o1", "c-1", "paid", 100.0, T + timedelta(hours=6)),
        ("o2", "c-2", "paid", 50.0, T + timedelta(hours=2)),
        ("o3", "c-1", "paid", 70.0, T + timedelta(days=10)),
        ("o4", "c-1", "cancelled", 30.0, T + timedelta(hours=6)),
    ]
    names = ("order_id", "customer_id", "status", "total", "created_at")
    _load(wh, "orders", [{"source": "shop", **dict(zip(names, o, strict=True))} for o in orders])


def _with(project: Project, **settings: str) -> Project:
    engagement = msgspec.structs.replace(EngagementConfig(), **settings)
    config = msgspec.structs.replace(project.config, engagement=engagement)
    return dataclasses.replace(project, config=config)


def test_attribution_picks_the_documented_touch(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    _world(warehouse, project)
    assert attributed(warehouse, project, NOW) == [("o1", 100.0, "m-3")]  # last touch, clicks
    first = _with(project, attribution_rule="first_touch")
    assert attributed(warehouse, first, NOW) == [("o1", 100.0, "m-1")]
    opens = _with(project, attribution_touch="open")
    assert attributed(warehouse, opens, NOW) == [("o1", 100.0, "m-3"), ("o2", 50.0, "m-2")]
    wide = _with(project, attribution_window="15d")
    assert attributed(warehouse, wide, NOW) == [("o1", 100.0, "m-3"), ("o3", 70.0, "m-3")]
    assert attributed(warehouse, project, T + timedelta(hours=3)) == []  # --now before o1


def test_journeys_report(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    _world(warehouse, project)
    report = journeys_report(warehouse, project, NOW)
    assert (report.rule, report.touch, report.window) == ("last_touch", "click", "3d")
    rows = {(s.step, s.variant): s for s in report.steps}
    a, b, second = rows[("first", "A")], rows[("first", "B")], rows[("second", None)]
    assert (a.sends, a.delivered, a.unique_opens, a.unique_clicks) == (2, 1, 1, 1)
    assert (a.conversions, a.revenue) == (0, 0.0)
    assert (b.sends, b.delivered, b.unique_opens, b.unique_clicks, b.conversions) == (1, 1, 1, 0, 0)
    assert (second.unique_clicks, second.conversions, second.revenue) == (1, 1, 100.0)


def test_status_headline_is_the_report_of_the_last_7_days(
    warehouse: Warehouse, project_dir: Path
) -> None:
    """``personify status``'s per-journey headline sums the report's figures (machine opens and
    scanner clicks excluded) over the messages decided in the 7 days before --now."""
    project = load_project(project_dir)
    _world(warehouse, project)
    _load(warehouse, "messages", [{**_message("m-old", "c-2", "first", "A"), "decided_at": NOW}])
    at = T + timedelta(days=2)
    expected = {"sends": 4, "unique_opens": 2, "unique_clicks": 2, "conversions": 1}
    quiet = {"delivered": 3, "complained": 0, "complaint_rate": 0.0, "complaint_rate_high": False}
    assert journey_headlines(warehouse, project, at) == {
        "cart": expected | {"revenue": 100.0} | quiet
    }
    report = journeys_report(warehouse, project, at)
    assert sum(s.unique_opens for s in report.steps) == expected["unique_opens"]
    assert journey_headlines(warehouse, project, T + timedelta(days=7, seconds=1)) == {}
    later = journey_headlines(warehouse, project, NOW)  # only m-old, decided at NOW
    assert later == {
        "cart": {
            "sends": 1,
            "unique_opens": 0,
            "unique_clicks": 0,
            "conversions": 0,
            "revenue": 0.0,
            "delivered": 1,
            "complained": 0,
            "complaint_rate": 0.0,
            "complaint_rate_high": False,
        }
    }


def test_assignments_are_recorded_once(warehouse: Warehouse) -> None:
    from personify.engagement.experiments import assign, record_assignments

    weights = {"A": 1.0, "B": 1.0}
    pairs = [(f"c-{i}", assign("cart.first", f"c-{i}", weights, 0.2)) for i in range(50)]
    assert record_assignments(warehouse, "cart.first", pairs, T) == 50
    assert record_assignments(warehouse, "cart.first", [("c-1", "B"), ("c-99", "A")], NOW) == 1
    stored = dict(
        warehouse.fetch(
            "SELECT customer_id, variant FROM experiment_assignments WHERE experiment = ?",
            ["cart.first"],
        )
    )
    assert len(stored) == 51 and stored["c-1"] == dict(pairs)["c-1"]


def test_experiment_uplift_over_the_holdout(warehouse: Warehouse, project_dir: Path) -> None:
    from personify.engagement.experiments import record_assignments, uplift

    project = load_project(project_dir)
    holdout = [(f"h-{i}", "holdout") for i in range(40)]
    variant = [(f"v-{i}", "A") for i in range(40)]
    record_assignments(warehouse, "cart.first", holdout + variant, T)
    buyers = [f"h-{i}" for i in range(4)] + [f"v-{i}" for i in range(12)]
    late = {"customer_id": "h-39", "created_at": T + timedelta(days=5)}  # outside the window
    rows = [{"customer_id": c, "created_at": T + timedelta(hours=3)} for c in buyers] + [late]
    rows += [{"customer_id": "v-0", "created_at": T + timedelta(hours=4)}]  # a second order
    _load(
        warehouse,
        "orders",
        [{"order_id": f"x{i}", "source": "shop", "total": 10.0, **r} for i, r in enumerate(rows)],
    )
    arms = journeys_report(warehouse, project, NOW).experiments
    assert [(a.experiment, a.variant, a.assigned, a.converted) for a in arms] == [
        ("cart.first", "holdout", 40, 4),
        ("cart.first", "A", 40, 12),
    ]
    assert arms[0].uplift is None and arms[1].uplift == uplift(40, 12, 40, 4)
    assert arms[1].uplift is not None and abs(arms[1].uplift.difference - 0.2) < 1e-9
    assert arms[1].uplift.note == "sample too small to conclude"  # 4 holdout conversions


def test_unsubscribes_and_complaints_per_step(warehouse: Warehouse, project_dir: Path) -> None:
    """Messages with an ``Email Unsubscribed`` / ``Email Marked as Spam`` event count once per
    message, over ``delivered``; events after --now, or naming another person's message, do
    not count; ``status`` flags a journey above ``engagement.max_complaint_rate``."""
    project = load_project(project_dir)
    _world(warehouse, project)
    at = T + timedelta(hours=3)
    record_feedback(warehouse, project, "m-1", "c-1", "unsubscribed", at=at)
    again = record_feedback(warehouse, project, "m-1", "c-1", "unsubscribed", at=at, esp="sendgrid")
    assert not again.new  # the link and the ESP reporting one unsubscribe: one event
    record_feedback(warehouse, project, "m-2", "c-2", "complained", at=at, esp="sendgrid")
    record_feedback(warehouse, project, "m-2", "c-2", "unsubscribed", at=at, esp="sendgrid")
    stranger = record_feedback(warehouse, project, "m-4", "c-9", "complained", at=at)
    assert stranger.message_id is None  # not c-9's message: nothing recorded
    late = T + timedelta(days=3)
    record_feedback(warehouse, project, "m-3", "c-1", "complained", at=late)
    report = journeys_report(warehouse, project, T + timedelta(days=2))
    rows = {(s.step, s.variant): s for s in report.steps}
    a, b, second = rows[("first", "A")], rows[("first", "B")], rows[("second", None)]
    assert (a.delivered, a.unsubscribed, a.complained) == (1, 1, 0)
    assert (a.unsubscribe_rate, a.complaint_rate) == (1.0, 0.0)
    assert (b.delivered, b.unsubscribed, b.complained) == (1, 1, 1)
    assert (b.unsubscribe_rate, b.complaint_rate) == (1.0, 1.0)
    assert (second.unsubscribed, second.complained, second.complaint_rate) == (0, 0, 0.0)
    later = {(s.step, s.variant): s for s in journeys_report(warehouse, project, NOW).steps}
    assert later[("second", None)].complained == 1
    headline = journey_headlines(warehouse, project, T + timedelta(days=2))["cart"]
    assert (headline["delivered"], headline["complained"]) == (3, 1)
    assert headline["complaint_rate"] == round(1 / 3, 6) and headline["complaint_rate_high"]
    lenient = _with(project, max_complaint_rate=0.5)  # type: ignore[arg-type]
    assert not journey_headlines(warehouse, lenient, T + timedelta(days=2))["cart"][
        "complaint_rate_high"
    ]


def test_experiment_unsubscribe_guardrail(warehouse: Warehouse, project_dir: Path) -> None:
    """Per arm, assigned customers who unsubscribed within the attribution window after their
    assignment (from ``suppressions``, whatever email it came from); each variant's
    unsubscribe-rate difference over the holdout's, flagged when it is significant."""
    project = load_project(project_dir)
    arms = [("A", f"a-{i}") for i in range(40)] + [("holdout", f"h-{i}") for i in range(40)]
    _load(
        warehouse,
        "experiment_assignments",
        [
            {"experiment": "cart-copy", "customer_id": c, "variant": v, "assigned_at": T}
            for v, c in arms
        ],
    )
    gone = [("a", i, T + timedelta(hours=5)) for i in range(10)]
    gone += [("a", 10, T + timedelta(days=5))]  # outside the 3-day window
    gone += [("a", 11, T - timedelta(days=1))]  # before the assignment
    gone += [("h", 0, T + timedelta(hours=1))]
    _load(
        warehouse,
        "suppressions",
        [
            {
                "subject_hash": f"h-{side}-{i}",
                "kind": "customer_id",
                "customer_id": f"{side}-{i}",
                "reason": "unsubscribed",
                "source": "unsubscribe",
                "created_at": when,
            }
            for side, i, when in gone
        ],
    )
    by_arm = {r.variant: r for r in experiments(warehouse, project, NOW)}
    held, a = by_arm["holdout"], by_arm["A"]
    assert (held.assigned, held.unsubscribed, held.unsubscribe_guardrail) == (40, 1, None)
    assert (a.assigned, a.unsubscribed) == (40, 10)
    guard = a.unsubscribe_guardrail
    assert guard is not None and guard.conclusive
    assert guard.difference == 10 / 40 - 1 / 40 and guard.low > 0
    assert guard.note == "more unsubscribes than the holdout (95 %)"
    early = {r.variant: r for r in experiments(warehouse, project, T + timedelta(hours=2))}
    assert (early["A"].unsubscribed, early["holdout"].unsubscribed) == (0, 1)
