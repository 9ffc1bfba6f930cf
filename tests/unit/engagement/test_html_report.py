"""The HTML report's list-fatigue figures: per step the unsubscribed and complained counts with
their rates (a complaint rate above ``max_complaint_rate`` in red), and per experiment variant
a guardrail line with the unsubscribe-rate difference over the holdout."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from personify.engagement.experiments import guardrail, uplift
from personify.engagement.html import journeys_html
from personify.engagement.report import JourneysReport, StepReport

NOW = datetime(2026, 3, 2, tzinfo=UTC)


def _page(max_complaint_rate: float | None = 0.003) -> str:
    sent = StepReport(
        "cart",
        "remind",
        "bold",
        1000,
        800,
        300,
        100,
        40,
        4000.0,
        unsubscribed=12,
        complained=4,
        unsubscribe_rate=0.015,
        complaint_rate=0.005,
        experiment="cart.remind",
        assigned=1000,
        converted=60,
        uplift=uplift(1000, 60, 1000, 30),
        assigned_unsubscribed=40,
        unsubscribe_guardrail=guardrail(1000, 40, 1000, 10),
    )
    held = StepReport(
        "cart",
        "remind",
        "holdout",
        0,
        0,
        0,
        0,
        0,
        0.0,
        experiment="cart.remind",
        assigned=1000,
        converted=30,
        assigned_unsubscribed=10,
    )
    report = JourneysReport("last_touch", "click", "3d", [sent, held])
    return journeys_html(
        report, project_name="shop", now=NOW, revenue={}, max_complaint_rate=max_complaint_rate
    )


def test_steps_show_unsubscribes_and_complaints_with_rates() -> None:
    page = _page()
    assert "<th>unsubscribed</th><th>complained</th>" in page
    assert '<td class="n">12 (1.50%)</td>' in page
    assert '<td class="n bad">4 (0.50%)</td>' in page  # above 0.3 %: red
    assert "12 unsubscribed, 4 marked as spam" in page
    lenient = _page(0.01)
    assert '<td class="n">4 (0.50%)</td>' in lenient and "n bad" not in lenient


def test_each_variant_has_a_guardrail_line() -> None:
    page = _page()
    guards = re.findall(r'<tr class="guard">(.*?)</tr>', page)
    assert len(guards) == 1  # the variant's; the holdout has none
    assert "guardrail: unsubscribed" in guards[0] and "+3.0 pts" in guards[0]
    assert '<td class="bad">more unsubscribes than the holdout (95 %)</td>' in guards[0]
