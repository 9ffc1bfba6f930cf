"""``personify report journeys --out report.html``: the journeys report as one self-contained page.

No scripts, no external files, no fonts or libraries to fetch: HTML, a little CSS and inline SVG
charts, so the file opens anywhere (and in a mail client's preview) exactly as written.

* **Funnel** — per journey step and variant: sends, delivered, unique opens, unique clicks
  (people only: machine opens and scanner clicks excluded) and conversions, as grouped bars;
* **Uplift** — per experiment variant: the conversion-rate difference over the holdout with its
  95 % interval (a point and whiskers about a zero line), and whether the sample can conclude;
  the table below it adds, as a guardrail line per variant, the unsubscribe-rate difference over
  the holdout's (red when the variant significantly drives people away);
* **List fatigue** — in the step table: messages unsubscribed from and marked as spam, with
  their rates over delivered (a complaint rate above ``engagement.max_complaint_rate`` in red);
* **Revenue over time** — attributed revenue per journey and day;
* the tables behind the charts, and the attribution rule used.

Every chart is an ``<svg class="chart …">`` with ``role="img"`` and an ``aria-label``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from personify.config import Project
from personify.engagement.experiments import HOLDOUT
from personify.engagement.report import (
    STEP_COLUMNS,
    JourneysReport,
    StepReport,
    attributed_sql,
)
from personify.warehouse.base import Warehouse

COLORS = ("#3b6fd4", "#e0803a", "#3aa37a", "#c4485a", "#8a63c7", "#6b7a8f")
STAGES = ("sends", "delivered", "unique_opens", "unique_clicks", "conversions")
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1040px;color:#1d2433}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.6rem 0}td,th{padding:.25rem .6rem;border-bottom:1px solid
#eef;text-align:left}th{background:#f4f6fb}td.n{text-align:right}.muted{color:#778}
svg.chart{display:block;margin:.8rem 0}.yes{color:#3aa37a;font-weight:600}
.no{color:#a06a1a}.bad{color:#c4485a;font-weight:600}tr.guard td{color:#556;font-size:.92em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def _svg(kind: str, title: str, width: float, height: float, body: list[str]) -> str:
    return (
        f'<svg class="chart {kind}" role="img" aria-label="{_e(title)}" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="16" font-weight="600">{_e(title)}</text>' + "".join(body) + "</svg>"
    )


def _label(step: StepReport) -> str:
    return f"{step.journey} · {step.step}" + (f" · {step.variant}" if step.variant else "")


def funnel_chart(steps: Sequence[StepReport]) -> str:
    """Grouped horizontal bars: each step/variant's sends → conversions."""
    rows = [s for s in steps if s.sends or s.variant == HOLDOUT]
    if not rows:
        return '<p class="muted">Funnel: nothing sent yet.</p>'
    top = max(max(getattr(s, k) for k in STAGES) for s in rows) or 1
    left, width, bar, gap = 260, 640, 11, 14
    group = bar * len(STAGES) + gap
    height = 40 + group * len(rows) + 30
    body: list[str] = []
    for i, stage in enumerate(STAGES):  # legend
        x = left + i * 130
        body.append(
            f'<rect x="{x}" y="26" width="10" height="10" fill="{COLORS[i]}"/>'
            f'<text x="{x + 14}" y="35" font-size="12">{stage.replace("_", " ")}</text>'
        )
    for r, step in enumerate(rows):
        y0 = 46 + r * group
        body.append(
            f'<text x="{left - 8}" y="{y0 + group / 2}" text-anchor="end" font-size="12">'
            f"{_e(_label(step)[:40])}</text>"
        )
        for i, stage in enumerate(STAGES):
            value = getattr(step, stage)
            w = max(1.0, width * value / top) if value else 0.0
            y = y0 + i * bar
            body.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" '
                f'fill="{COLORS[i]}"><title>{_e(stage)}: {value:,}</title></rect>'
                f'<text x="{left + w + 4:.1f}" y="{y + bar - 3}" font-size="10">{value:,}</text>'
            )
    return _svg("funnel", "Funnel per journey step and variant", left + width + 90, height, body)


def uplift_chart(steps: Sequence[StepReport]) -> str:
    """Each experiment variant's uplift over the holdout: the point and its 95 % interval."""
    rows = [s for s in steps if s.uplift is not None]
    if not rows:
        return '<p class="muted">Uplift: no experiment with a holdout yet.</p>'
    bounds = [b for s in rows if s.uplift for b in (s.uplift.low, s.uplift.high, 0.0)]
    lo, hi = min(bounds), max(bounds)
    span = (hi - lo) or 0.01
    lo, hi = lo - span * 0.1, hi + span * 0.1
    left, width, row = 260, 600, 34
    height = 60 + row * len(rows) + 20

    def x(value: float) -> float:
        return left + width * (value - lo) / (hi - lo)

    body = [
        f'<line class="zero" x1="{x(0):.1f}" y1="30" x2="{x(0):.1f}" y2="{height - 24}" '
        'stroke="#667" stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 8}" text-anchor="middle" font-size="11">0</text>',
        f'<text x="{left}" y="{height - 8}" font-size="11">{_pct(lo)}</text>',
        f'<text x="{left + width}" y="{height - 8}" text-anchor="end" font-size="11">'
        f"{_pct(hi)}</text>",
    ]
    for i, step in enumerate(rows):
        u = step.uplift
        assert u is not None
        y = 46 + i * row
        color = COLORS[2] if u.conclusive else COLORS[1]
        body += [
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="12">'
            f"{_e(_label(step)[:40])}</text>",
            f'<line class="interval" x1="{x(u.low):.1f}" y1="{y}" x2="{x(u.high):.1f}" '
            f'y2="{y}" stroke="{color}" stroke-width="3"/>',
            f'<line x1="{x(u.low):.1f}" y1="{y - 6}" x2="{x(u.low):.1f}" y2="{y + 6}" '
            f'stroke="{color}" stroke-width="2"/>',
            f'<line x1="{x(u.high):.1f}" y1="{y - 6}" x2="{x(u.high):.1f}" y2="{y + 6}" '
            f'stroke="{color}" stroke-width="2"/>',
            f'<circle class="point" cx="{x(u.difference):.1f}" cy="{y}" r="5" fill="{color}">'
            f"<title>{_pct(u.difference)} [{_pct(u.low)}, {_pct(u.high)}]: {_e(u.note)}"
            "</title></circle>",
            f'<text x="{left + width + 8}" y="{y + 4}" font-size="11">{_pct(u.difference)}</text>',
        ]
    return _svg(
        "uplift",
        "Uplift over the holdout (conversion rate, 95 % interval)",
        left + width + 90,
        height,
        body,
    )


def revenue_series(wh: Warehouse, project: Project, now: datetime) -> dict[str, dict[date, float]]:
    """Attributed revenue per journey and day (of the order)."""
    sql, params = attributed_sql(project, now)
    rows = wh.fetch(
        f"SELECT m.journey, a.created_at, a.total FROM ({sql}) a "
        "JOIN messages m ON m.idempotency_key = a.message_key",
        params,
    )
    out: dict[str, dict[date, float]] = {}
    for journey, created, total in rows:
        day = created.date() if isinstance(created, datetime) else created
        per = out.setdefault(str(journey), {})
        per[day] = per.get(day, 0.0) + float(total or 0)
    return out


def revenue_chart(series: dict[str, dict[date, float]]) -> str:
    """Lines of attributed revenue per journey over days."""
    days = sorted({d for per in series.values() for d in per})
    if not days:
        return '<p class="muted">Revenue over time: no attributed orders yet.</p>'
    top = max(v for per in series.values() for v in per.values()) or 1.0
    w, h, pad = 900, 240, 64
    first, last = days[0].toordinal(), days[-1].toordinal()

    def xy(d: date, v: float) -> tuple[float, float]:
        frac = (d.toordinal() - first) / (last - first) if last > first else 0.5
        return pad + (w - 2 * pad) * frac, h - pad - (h - 2 * pad) * v / top

    body = [
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#99a"/>',
        f'<text x="{pad - 6}" y="{pad + 4}" text-anchor="end" font-size="11">{top:,.0f}</text>',
        f'<text x="{pad - 6}" y="{h - pad + 4}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{pad}" y="{h - pad + 18}" font-size="11">{days[0]:%Y-%m-%d}</text>',
        f'<text x="{w - pad}" y="{h - pad + 18}" text-anchor="end" font-size="11">'
        f"{days[-1]:%Y-%m-%d}</text>",
    ]
    for i, (name, per) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        points = [xy(d, per.get(d, 0.0)) for d in days]
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        body.append(
            f'<polyline class="line" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{coords}"/>'
        )
        body += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points]
        ly = h + 14 * (i + 1) - 20
        body.append(
            f'<rect x="{pad}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{pad + 16}" y="{ly}" font-size="12">{_e(name)}: '
            f"{sum(per.values()):,.2f}</text>"
        )
    return _svg("revenue", "Attributed revenue per journey and day", w, h + 14 * len(series), body)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    classes: Sequence[str | None] | None = None,
) -> str:
    """A table; ``classes``: each row's CSS class (``None`` for none)."""
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    css = list(classes or [None] * len(rows))
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>")
        + "".join(
            f'<td class="n">{v:,}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else (v if isinstance(v, _Raw) else f"<td>{_e(v)}</td>")
            for v in r
        )
        + "</tr>"
        for r, c in zip(rows, css, strict=True)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class _Raw(str):
    """A cell already rendered (``<td …>…</td>``)."""


def _rate_cell(n: int, rate: float, delivered: int, ceiling: float | None = None) -> Any:
    text = f"{n:,} ({rate:.2%})" if delivered else f"{n:,}"
    css = "n bad" if ceiling is not None and rate > ceiling else "n"
    return _Raw(f'<td class="{css}">{_e(text)}</td>')


def _guard_row(step: StepReport) -> tuple[Any, ...]:
    g = step.unsubscribe_guardrail
    n = step.assigned_unsubscribed or 0
    rate = f"{n / step.assigned:.1%}" if step.assigned else "—"
    verdict: Any = ""
    if g is not None:
        worse = g.conclusive and g.difference > 0
        verdict = _Raw(f'<td class="{"bad" if worse else "muted"}">{_e(g.note)}</td>')
    return (
        "",
        "",
        "",
        "↳ guardrail: unsubscribed",
        "",
        n,
        rate,
        "—" if g is None else _pct(g.difference),
        "—" if g is None else f"[{_pct(g.low)}, {_pct(g.high)}]",
        verdict,
    )


def _arm_rows(steps: Sequence[StepReport]) -> list[tuple[Any, ...]]:
    return [
        (
            s.experiment or "",
            s.journey,
            s.step,
            s.variant or "",
            s.assigned or 0,
            s.converted or 0,
            f"{(s.converted or 0) / s.assigned:.1%}" if s.assigned else "—",
            "—" if s.uplift is None else _pct(s.uplift.difference),
            "—" if s.uplift is None else f"[{_pct(s.uplift.low)}, {_pct(s.uplift.high)}]",
            _verdict(s),
        )
        for s in steps
    ]


def _verdict(step: StepReport) -> Any:
    u = step.uplift
    if u is None:
        return "holdout" if step.variant == HOLDOUT else ""
    css = "yes" if u.conclusive else "no"
    return _Raw(f'<td class="{css}">{_e(u.note)}</td>')


def journeys_html(
    report: JourneysReport,
    *,
    project_name: str,
    now: datetime,
    revenue: dict[str, dict[date, float]],
    max_complaint_rate: float | None = None,
) -> str:
    """The whole page (see the module docstring); complaint rates above
    ``max_complaint_rate`` are shown in red."""
    steps = report.steps
    rule = (
        f"attribution: {report.rule.replace('_', ' ')}, {report.touch}s within {report.window}; "
        "machine opens and scanner clicks excluded"
    )
    step_rows = [
        (
            s.journey,
            s.step,
            s.variant or "—",
            s.sends,
            s.delivered,
            s.unique_opens,
            s.unique_clicks,
            s.conversions,
            f"{s.revenue:,.2f}",
            _rate_cell(s.unsubscribed, s.unsubscribe_rate, s.delivered),
            _rate_cell(s.complained, s.complaint_rate, s.delivered, max_complaint_rate),
        )
        for s in steps
    ]
    arms = [s for s in steps if s.experiment is not None]
    arm_rows: list[tuple[Any, ...]] = []
    arm_classes: list[str | None] = []
    for s, row in zip(arms, _arm_rows(arms), strict=True):
        arm_rows.append(row)
        arm_classes.append(None)
        if s.variant != HOLDOUT:
            arm_rows.append(_guard_row(s))
            arm_classes.append("guard")
    total = sum(s.revenue for s in steps)
    sections = [
        f"<h1>Journeys — {_e(project_name)}</h1>",
        f'<p class="muted">as of {_e(now.isoformat(timespec="seconds"))}; {_e(rule)}</p>',
        f"<p>Sent {sum(s.sends for s in steps):,} emails; "
        f"{sum(s.conversions for s in steps):,} attributed orders, revenue {total:,.2f}; "
        f"{sum(s.unsubscribed for s in steps):,} unsubscribed, "
        f"{sum(s.complained for s in steps):,} marked as spam.</p>",
        "<h2>Funnel</h2>",
        funnel_chart(steps),
        _table(STEP_COLUMNS, step_rows),
        "<h2>Experiments: uplift over the holdout</h2>",
        uplift_chart(steps),
        '<p class="muted">Intent to treat: every assigned customer counts, sent to or not; a '
        "conversion is an order within the attribution window after assignment.</p>",
        _table(
            [
                "experiment",
                "journey",
                "step",
                "variant",
                "assigned",
                "converted",
                "rate",
                "uplift",
                "95 % interval",
                "verdict",
            ],
            arm_rows,
            arm_classes,
        ),
        "<h2>Revenue over time</h2>",
        revenue_chart(revenue),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Journeys — {_e(project_name)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
