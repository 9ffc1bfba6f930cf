"""``personify traits predictive --holdout --out page.html`` in real headless Chromium: a shop of
500 simulated customers runs with predictive traits on, and the holdout page opens without
console errors, draws its chart (a line and a point per repeat-count group for predicted and for
actual, each point where its value puts it), and its table and totals say what ``--json`` says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conformance.test_predictive_traits import NOW
from tests.e2e.browser import (
    chromium,
    chromium_or_skip,
    count_colours,
    html_report,
    page_errors,
)
from tests.e2e.cli import personify_json
from tests.e2e.test_predictive_cli import make_project

pytest.importorskip("scipy")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DRAWN = """() => {
  const svg = document.querySelector('svg.chart.holdout');
  if (!svg) return null;
  const box = svg.getBoundingClientRect();
  const points = (series) => [...svg.querySelectorAll('circle.point.' + series)].map(c => {
    const b = c.getBoundingClientRect();
    return {frequency: c.dataset.frequency, value: Number(c.dataset.value),
            cy: b.top + b.height / 2, width: b.width,
            inside: b.left >= box.left && b.right <= box.right
                    && b.top >= box.top && b.bottom <= box.bottom};
  });
  return {
    width: box.width, height: box.height,
    lines: [...svg.querySelectorAll('polyline')].map(l => [l.classList[0], l.points.length,
                                                           l.getBBox().width]),
    predicted: points('predicted'), actual: points('actual'),
    table: [...document.querySelectorAll('table.holdout tr')].slice(1)
      .map(tr => [...tr.querySelectorAll('td')].map(td => td.textContent)),
    totals: document.querySelector('p.totals').textContent,
  };
}"""


def test_the_holdout_page_opens_in_chromium_with_its_chart_and_the_json_numbers(
    tmp_path: Path,
) -> None:
    chromium_or_skip()

    root = make_project(tmp_path / "shop", min_customers=100)
    now = NOW.isoformat()
    personify_json("run", "--project", str(root), "--now", now)
    out = tmp_path / "page.html"
    cmd = ("traits", "predictive", "--holdout", "--project", str(root), "--now", now)
    html_report(out, *cmd)
    hold = personify_json(*cmd)["holdout"]
    assert hold["status"] == "fitted" and len(hold["rows"]) >= 3, hold

    with chromium() as browser:
        tab = browser.new_page(viewport={"width": 900, "height": 900})
        errors = page_errors(tab)
        tab.goto(out.as_uri())
        drawn = tab.evaluate(DRAWN)
        shot = tab.screenshot(full_page=True)
        ink = count_colours(
            browser, shot, {"blue": (0x3B, 0x6F, 0xD8), "orange": (0xD8, 0x84, 0x3B)}, near=14
        )
    assert errors == []
    assert drawn is not None, "no svg.chart.holdout on the page"
    assert drawn["width"] > 400 and drawn["height"] > 200, json.dumps(drawn)
    groups = [r["frequency"] for r in hold["rows"]]
    assert [(name, n) for name, n, _ in drawn["lines"]] == [
        ("predicted", len(groups)),
        ("actual", len(groups)),
    ]
    assert all(width > 100 for _, _, width in drawn["lines"])
    for series in ("predicted", "actual"):
        points = drawn[series]
        assert [pt["frequency"] for pt in points] == groups, series
        assert [pt["value"] for pt in points] == [r[series] for r in hold["rows"]], series
        assert all(pt["inside"] and pt["width"] > 3 for pt in points), points
    # each point is where its value puts it: a larger value is drawn higher up
    every = drawn["predicted"] + drawn["actual"]
    for a in every:
        for b in every:
            if a["value"] > b["value"] + 1e-9:
                assert a["cy"] < b["cy"], (a, b)
    assert drawn["table"] == [
        [r["frequency"], f"{r['customers']:,}", f"{r['predicted']:.3f}", f"{r['actual']:.3f}"]
        for r in hold["rows"]
    ]
    assert drawn["totals"] == (
        f"Total: predicted {hold['predicted_total']:,.1f}, actual {hold['actual_total']:,}; "
        f"mean absolute error per customer {hold['mean_absolute_error']:.3f}."
    )
    assert ink["blue"] > 50 and ink["orange"] > 50, ink  # both series are painted
