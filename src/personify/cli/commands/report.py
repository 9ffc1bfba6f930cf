"""``personify report journeys``: what each journey's emails did — sends, opens, clicks, orders,
unsubscribes and spam complaints."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from personify import clock
from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    app,
    console,
    emit_json,
    out_file,
    pin_now,
    write_out,
)

if TYPE_CHECKING:
    from personify.engagement.report import JourneysReport

report_app = typer.Typer(
    help="Measurement: what the emails did (opens and clicks by people, machine ones excluded) "
    "and the orders attributed to them.",
    no_args_is_help=True,
)
app.add_typer(report_app, name="report", rich_help_panel="Email")


@report_app.command("journeys")
def journeys_command(
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--html",
            help="Also write the report as one self-contained HTML page with charts (funnel, "
            "uplift with intervals, revenue over time) to this file.",
        ),
    ] = None,
) -> None:
    """Per journey, step and variant: sends, engagement, conversions, revenue, uplift.

    Per journey, step and variant: sends, delivered, unique opens and clicks (machine opens
    and scanner clicks excluded), conversions and revenue — orders placed within
    engagement.attribution_window after a click (or open, with attribution_touch: open), the
    touch chosen by engagement.attribution_rule (last_touch by default; the report names it) —
    and the messages unsubscribed from and marked as spam, with their rates over delivered.
    Experiments: each variant's conversions against the holdout, with a 95 % interval and
    whether the sample is big enough to conclude, and as a guardrail its unsubscribe rate
    against the holdout's. --out report.html writes the same as a page
    with charts."""
    from personify.engagement.report import STEP_COLUMNS, journeys_report
    from personify.session import open_session

    pin_now(now)
    out_file(out)
    with open_session(project) as session:
        at = clock.now()
        report = journeys_report(session.warehouse, session.project, at)
        if out is not None:
            from personify.engagement.html import journeys_html, revenue_series

            page = journeys_html(
                report,
                project_name=session.project.config.name,
                now=at,
                revenue=revenue_series(session.warehouse, session.project, at),
                max_complaint_rate=session.project.config.engagement.max_complaint_rate,
            )
            write_out(out, page)
    if json:
        emit_json(asdict(report))
        return
    table = Table(*STEP_COLUMNS, title="Journeys")
    for s in report.steps:
        rate = f" ({s.unique_clicks / s.delivered:.1%})" if s.delivered else ""
        table.add_row(
            s.journey,
            s.step,
            s.variant or "-",
            f"{s.sends:,}",
            f"{s.delivered:,}",
            f"{s.unique_opens:,}",
            f"{s.unique_clicks:,}{rate}",
            f"{s.conversions:,}",
            f"{s.revenue:,.2f}",
            f"{s.unsubscribed:,} ({s.unsubscribe_rate:.2%})"
            if s.delivered
            else f"{s.unsubscribed:,}",
            f"{s.complained:,} ({s.complaint_rate:.2%})" if s.delivered else f"{s.complained:,}",
        )
    shown = console()
    shown.print(table, markup=False)
    shown.print(
        f"attribution: {report.rule.replace('_', ' ')}, {report.touch}s within {report.window}; "
        "machine opens and scanner clicks excluded",
        markup=False,
    )
    if report.experiments:
        _arms(shown, report)
    if out is not None:
        shown.print(f"HTML report: {out}", markup=False, soft_wrap=True)


def _arms(shown: Any, report: JourneysReport) -> None:
    arms = Table(
        "experiment", "variant", "assigned", "converted", "uplift vs holdout", "95 % interval", ""
    )
    for arm in report.experiments:
        lift, guard = arm.uplift, arm.unsubscribe_guardrail
        rate = f"{arm.converted / arm.assigned:.1%}" if arm.assigned else "-"
        gone = f"{arm.unsubscribed / arm.assigned:.1%}" if arm.assigned else "-"
        arms.add_row(
            arm.experiment,
            arm.variant,
            f"{arm.assigned:,}",
            f"{arm.converted:,} ({rate})",
            "-" if lift is None else f"{lift.difference:+.1%}",
            "-" if lift is None else f"[{lift.low:+.1%}, {lift.high:+.1%}]",
            "" if lift is None else lift.note,
        )
        arms.add_row(  # the guardrail line: what the variant costs in unsubscribes
            "",
            "  guardrail",
            "",
            f"{arm.unsubscribed:,} unsubscribed ({gone})",
            "-" if guard is None else f"{guard.difference:+.1%}",
            "-" if guard is None else f"[{guard.low:+.1%}, {guard.high:+.1%}]",
            "" if guard is None else guard.note,
        )
    shown.print(arms, markup=False)
