"""The predictive traits' holdout check and its HTML page (``personify traits predictive
--holdout [--out page.html]``).

:func:`holdout` fits the models of :mod:`personify.profiles.predictive` on the orders up to
``--now`` less ``traits.predictive.horizon_days`` and compares each customer's expected purchase
days in the horizon with the ones that followed, grouped by her repeat purchase days before it
(0‥6 and 7+). :func:`holdout_chart` draws the comparison as an SVG (a line and a point per group
for each of predicted and actual), :func:`holdout_page` the self-contained page around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

import numpy as np

from personify import clock
from personify.config import Project
from personify.profiles.predictive import _columns, expected_purchases, fit, read_summary
from personify.warehouse.base import Warehouse


@dataclass(frozen=True)
class HoldoutRow:
    """Customers whose calibration frequency is ``frequency`` (the last row: that many or
    more): their mean predicted and actual repeat purchases in the holdout."""

    frequency: str
    customers: int
    predicted: float
    actual: float


@dataclass(frozen=True)
class Holdout:
    """A fit on the orders up to ``calibration_end`` (= ``--now`` less the horizon), its
    predictions for the horizon against the purchase days that followed."""

    calibration_end: str
    horizon_days: int
    status: str
    note: str | None
    rows: tuple[HoldoutRow, ...] = ()
    predicted_total: float = 0.0
    actual_total: int = 0
    mean_absolute_error: float = 0.0


def holdout(wh: Warehouse, project: Project, now: datetime | None = None) -> Holdout:
    """Fit as of ``now`` less the horizon; compare each customer's expected purchase days in
    the horizon with her actual ones (the frequency she gained by ``now``), by calibration
    frequency 0‥6 and 7+."""
    now = clock.now() if now is None else now
    config = project.config.traits.predictive
    end = now - timedelta(days=config.horizon_days)
    calibration = read_summary(wh, project, now=end).sort_by("customer_id")
    result = fit(calibration, config)
    if result.bgnbd is None:
        return Holdout(end.isoformat(), config.horizon_days, result.status, result.note)
    later = read_summary(wh, project, now=now)
    gained = dict(
        zip(
            later.column("customer_id").to_pylist(),
            later.column("frequency").to_pylist(),
            strict=True,
        )
    )
    x, t_x, big_t, _ = _columns(calibration)
    predicted = expected_purchases(result.bgnbd, config.horizon_days, x, t_x, big_t)
    ids = calibration.column("customer_id").to_pylist()
    actual = np.array([gained.get(c, 0) for c in ids], dtype=np.float64) - x
    rows = []
    for k in range(8):
        sel = x == k if k < 7 else x >= 7
        if sel.any():
            rows.append(
                HoldoutRow(
                    str(k) if k < 7 else "7+",
                    int(sel.sum()),
                    round(float(predicted[sel].mean()), 4),
                    round(float(actual[sel].mean()), 4),
                )
            )
    return Holdout(
        end.isoformat(),
        config.horizon_days,
        "fitted",
        result.note,
        tuple(rows),
        round(float(predicted.sum()), 2),
        int(actual.sum()),
        round(float(np.abs(predicted - actual).mean()), 4),
    )


def holdout_chart(report: Holdout) -> str:
    """SVG: mean predicted and actual purchases in the holdout, by calibration frequency — a
    line per series and a point per group on it (``circle.point.predicted`` /
    ``circle.point.actual``, its value in ``data-value`` and a tooltip)."""
    w, h, left, top = 560.0, 260.0, 48.0, 30.0
    plot_w, plot_h = w - left - 20, h - top - 40
    top_value = max([r.predicted for r in report.rows] + [r.actual for r in report.rows] + [0.1])
    step = plot_w / max(len(report.rows), 1)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#99a"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" font-size="11">'
        f"{top_value:.2f}</text>",
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for series, colour, key in (
        ("predicted", "#3b6fd8", "predicted"),
        ("actual", "#d8843b", "actual"),
    ):
        points = " ".join(
            f"{left + step * (i + 0.5):.1f},"
            f"{top + plot_h - plot_h * getattr(r, key) / top_value:.1f}"
            for i, r in enumerate(report.rows)
        )
        body.append(
            f'<polyline class="{series}" points="{points}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        for i, r in enumerate(report.rows):
            value = getattr(r, key)
            body.append(
                f'<circle class="point {series}" data-frequency="{escape(r.frequency)}" '
                f'data-value="{value}" cx="{left + step * (i + 0.5):.1f}" '
                f'cy="{top + plot_h - plot_h * value / top_value:.1f}" r="3.5" '
                f'fill="{colour}"><title>{escape(r.frequency)} before: {series} '
                f"{value:.3f}</title></circle>"
            )
    for i, r in enumerate(report.rows):
        body.append(
            f'<text x="{left + step * (i + 0.5):.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" font-size="11">{escape(r.frequency)}</text>'
        )
    body.append(
        f'<text x="{left + plot_w / 2}" y="{h - 4}" text-anchor="middle" font-size="11">'
        "repeat purchase days before the holdout · blue: predicted, orange: actual</text>"
    )
    title = f"Purchases in the {report.horizon_days}-day holdout: predicted vs actual"
    return (
        f'<svg class="chart holdout" role="img" aria-label="{escape(title)}" width="{w:.0f}" '
        f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="16" font-weight="600">{escape(title)}</text>' + "".join(body) + "</svg>"
    )


def holdout_page(report: Holdout, project_name: str) -> str:
    """A self-contained HTML page (no script, no external resource): the chart, a table of the
    groups (``table.holdout``, one row per group) and the totals."""
    rows = "".join(
        f"<tr><td>{escape(r.frequency)}</td><td class=n>{r.customers:,}</td>"
        f"<td class=n>{r.predicted:.3f}</td><td class=n>{r.actual:.3f}</td></tr>"
        for r in report.rows
    )
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>Predictive traits — {escape(project_name)}</title>"
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:760px}"
        "td,th{padding:.25rem .6rem;border-bottom:1px solid #eef}td.n{text-align:right}</style>"
        f"<h1>Predictive traits — {escape(project_name)}</h1>"
        f"<p>Fit on the orders up to {escape(report.calibration_end)}; predictions for the "
        f"next {report.horizon_days} days against the purchase days that followed "
        f"(generated {escape(clock.now().isoformat())}).</p>"
        + holdout_chart(report)
        + "<table class=holdout><tr><th>repeat purchases before</th><th>customers</th>"
        "<th>predicted (mean)</th><th>actual (mean)</th></tr>" + rows + "</table>"
        f"<p class=totals>Total: predicted {report.predicted_total:,.1f}, actual "
        f"{report.actual_total:,}; mean absolute error per customer "
        f"{report.mean_absolute_error:.3f}.</p></html>"
    )
