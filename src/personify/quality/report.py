"""``personify report quality``: one self-contained HTML page people can look at.

Sections: validation violations over time (a chart per check time, a table of the latest),
quarantine reasons (a bar chart), freshness per source (a bar chart of the lag), reconciliation
runs (discrepancies and pending per run, a chart and a table) and volume anomalies. Charts are
inline SVG drawn here — no script, no network: the file opens anywhere, offline. Keys and
counts only: no personal values.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from personify import clock
from personify.quality.anomalies import null_rate_anomalies, volume_anomalies
from personify.quality.drift import recent_changes
from personify.session import Session

_COLORS = ("#3b6fd4", "#e0803a", "#3aa37a", "#c4485a", "#8a63c7", "#6b7a8f")
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#1d2433}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.6rem 0}td,th{padding:.25rem .7rem;border-bottom:1px solid
#eef;text-align:left}th{background:#f4f6fb}td.n{text-align:right}.muted{color:#778}
svg{display:block;margin:.6rem 0}.flag{color:#c4485a;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: float) -> str:
    return f"{value:,.1f}" if 0 < abs(value) < 10 else f"{value:,.0f}"


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> str:
    """A horizontal bar chart (SVG) of ``(label, value)``."""
    if not bars:
        return f'<p class="muted">{_e(title)}: nothing yet.</p>'
    top = max(v for _, v in bars) or 1.0
    row, width, left = 26, 760, 220
    height = row * len(bars) + 30
    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{width + left + 90}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" font-weight="600">{_e(title)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 26 + i * row
        w = max(1.0, width * value / top)
        color = _COLORS[i % len(_COLORS)]
        parts += [
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(label[:32])}</text>',
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 8}" fill="{color}"/>',
            f'<text x="{left + w + 6:.1f}" y="{y + 15}">{_number(value)}{_e(unit)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, series: dict[str, list[tuple[datetime, float]]]) -> str:
    """Lines (SVG) of ``name → [(time, value)]`` over a shared time axis."""
    points = [p for s in series.values() for p in s]
    if not points:
        return f'<p class="muted">{_e(title)}: nothing yet.</p>'
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    top = max(v for _, v in points) or 1.0
    w, h, pad = 900, 220, 64

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = pad + (w - 2 * pad) * ((t.timestamp() - t0) / (t1 - t0) if t1 > t0 else 0.5)
        return x, h - pad - (h - 2 * pad) * v / top

    parts = [
        f'<svg role="img" aria-label="{_e(title)}" width="{w}" height="{h + 20 * len(series)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="16" font-weight="600">{_e(title)}</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#99a"/>',
        f'<text x="{pad - 6}" y="{pad + 4}" text-anchor="end">{top:,.0f}</text>',
        f'<text x="{pad - 6}" y="{h - pad + 4}" text-anchor="end">0</text>',
    ]
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in sorted(pts)))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for x, y in (xy(t, v) for t, v in pts):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        ly = h + 14 * (i + 1)
        parts.append(
            f'<rect x="{pad}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{pad + 16}" y="{ly}">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>' if isinstance(v, int | float) else f"<td>{_e(v)}</td>"
            for v in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def quality_report_html(session: Session) -> str:
    """The report (see the module docstring)."""
    from personify.status import status_report

    wh = session.warehouse
    now = clock.now()
    status = status_report(session)
    violations = wh.fetch(
        "SELECT checked_at, rule, action, violations FROM quality_violations "
        "ORDER BY checked_at, rule"
    )
    over_time: dict[str, list[tuple[datetime, float]]] = {}
    for checked_at, rule, _, count in violations:
        over_time.setdefault(str(rule), []).append((checked_at, float(count)))
    latest = status["quality"]["violations"]
    reasons = wh.fetch("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 2 DESC")
    freshness = [
        (s["name"], float(s["lag_seconds"]) / 3600)
        for s in status["sources"]
        if s.get("lag_seconds") is not None
    ]
    never = [s["name"] for s in status["sources"] if s.get("lag_seconds") is None]
    runs = wh.fetch(
        "SELECT started_at, status, missing_in_warehouse, missing_at_source, mismatched, "
        "pending, repaired, flagged FROM reconciliation_runs ORDER BY started_at"
    )
    recon_series: dict[str, list[tuple[datetime, float]]] = {"discrepancies": [], "pending": []}
    for r in runs:
        recon_series["discrepancies"].append((r[0], float(r[2] + r[3] + r[4])))
        recon_series["pending"].append((r[0], float(r[5])))
    anomalies = [*volume_anomalies(wh, now), *null_rate_anomalies(wh, now)]
    sections = [
        f"<h1>Data quality — {_e(session.project.config.name)}</h1>",
        f'<p class="muted">at {_e(now.isoformat(timespec="seconds"))}</p>',
        "<h2>Validation rules</h2>",
        line_chart("Violations per rule over time", over_time),
        _table(
            ["rule", "table", "action", "violations", "sample keys"],
            [
                (v["rule"], v["table"], v["action"], v["violations"], ", ".join(v["sample"]))
                for v in latest
            ],
        ),
        "<h2>Quarantine</h2>",
        bar_chart("Quarantined inputs by reason", [(str(r), float(n)) for r, n in reasons]),
        "<h2>Freshness</h2>",
        bar_chart("Hours since each source's last data", freshness, unit=" h"),
        f'<p class="muted">never synced: {_e(", ".join(never) or "none")}</p>',
        "<h2>Reconciliation</h2>",
        line_chart("Discrepancies and pending per run", recon_series),
        _table(
            [
                "started",
                "status",
                "missing in warehouse",
                "missing at source",
                "mismatched",
                "pending",
                "repaired",
                "flagged",
            ],
            [
                (
                    f"{r[0]:%Y-%m-%d %H:%M}",
                    r[1],
                    int(r[2]),
                    int(r[3]),
                    int(r[4]),
                    int(r[5]),
                    int(r[6]),
                    "yes" if r[7] else "",
                )
                for r in reversed(runs[-20:])
            ],
        ),  # fmt: skip
        "<h2>Anomalies (last 24 h)</h2>",
        _table(
            ["table", "source", "series or column", "kind", "last 24 h", "week before"],
            [(a.table, a.source, a.name, a.kind, a.last_day, a.median) for a in anomalies],
        ),
        "<h2>Schema drift (last 24 h)</h2>",
        _table(
            ["detected", "source", "stream", "field", "change", "was", "now"],
            [
                (
                    f"{c.detected_at:%Y-%m-%d %H:%M}",
                    c.source,
                    c.stream,
                    c.field,
                    c.change,
                    c.old_type or "",
                    c.new_type or "",
                )
                for c in recent_changes(wh, now)
            ],
        ),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Data quality — {_e(session.project.config.name)}</title>"
        f"<style>{_STYLE}</style></head><body>" + "".join(sections) + "</body></html>\n"
    )
