"""``personify quality check|conflicts``: validation rules now, and where sources disagree;
``personify report quality``: the HTML report."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
from personify.cli.commands.report import report_app

quality_app = typer.Typer(
    help="Data quality: validation rules, freshness, and where sources disagree.\n\n"
    "Validation rules (quality.rules in personify.yml) run in the warehouse, "
    "and the fields on which sources disagree. `personify reconcile` compares sources with the "
    "warehouse.",
    no_args_is_help=True,
)
app.add_typer(quality_app, name="quality", rich_help_panel="Pipeline")


@quality_app.command("check")
def check_command(
    project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """Run every validation rule and freshness limit now; exit 1 on a breach.

    Run every validation rule and freshness limit now (they also run after each sync and
    run): rows breaking each rule, a sample of their keys, the action taken (quarantine moves
    the rows aside)."""
    from personify.quality.rules import check_rules
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        found = check_rules(session, trigger="manual")
    if json:
        emit_json([asdict(v) for v in found])
        return
    table = Table("table", "rule", "action", "rows checked", "violations", "sample keys")
    for v in found:
        table.add_row(
            v.table,
            v.rule,
            v.action,
            f"{v.checked_rows:,}",
            f"{v.violations:,}" + (f" ({v.quarantined:,} quarantined)" if v.quarantined else ""),
            ", ".join(v.sample),
        )
    out = console()
    out.print(table, markup=False)
    broken = sum(1 for v in found if v.violations)
    out.print(f"{len(found)} rule(s) checked, {broken} broken", markup=False)


@quality_app.command("conflicts")
def conflicts_command(
    fields: Annotated[
        list[str] | None, typer.Option("--field", "-f", help="Only this field (repeatable).")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", "-c", help="Only this customer (id or email).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Conflicts to list.")] = 50,
    mask: Annotated[
        bool, typer.Option("--mask", help="Mask personal values (emails, phones, names).")
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """The profile fields on which sources disagree for one customer.

    Profile fields on which sources disagree for one customer (e.g. the CRM and the shop hold
    other phones): each source's current value, the value that won and the survivorship rule
    that chose it, with the number of conflicts per field."""
    from personify.profiles.read import resolve_customer
    from personify.quality.conflicts import conflicts
    from personify.session import open_session

    with open_session(project) as session:
        wh = session.warehouse
        cid = resolve_customer(wh, customer, session.project) if customer else None
        found, per_field = conflicts(
            wh,
            session.project.config.survivorship,
            fields=fields or (),
            customer=cid,
            limit=limit,
            mask=mask,
        )
    if json:
        emit_json({"per_field": per_field, "conflicts": [asdict(c) for c in found]})
        return
    out = console()
    table = Table("customer", "field", "values by source", "winner", "rule", title="Conflicts")
    for c in found:
        values = "; ".join(f"{s}: {v}" for s, v in c.values.items())
        table.add_row(c.customer_id, c.field, values, f"{c.winner} ({c.winner_source})", c.rule)
    out.print(table, markup=False)
    summary = ", ".join(f"{k}: {v:,}" for k, v in sorted(per_field.items())) or "none"
    out.print(f"conflicts per field: {escape(summary)}")


@report_app.command("quality")
def report_quality_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "quality-report.html"
    ),
    project: ProjectOpt = Path("."),
    now: NowOpt = None,
) -> None:
    """A data quality report as one offline HTML file with charts.

    A data quality report as one HTML file (inline charts, no script, opens offline):
    violations over time, quarantine reasons, freshness per source, reconciliation runs,
    volume anomalies."""
    from personify.quality.report import quality_report_html
    from personify.session import open_session

    pin_now(now)
    out_file(out)
    with open_session(project) as session:
        page = quality_report_html(session)
    write_out(out, page)
    console().print(f"wrote {out}", markup=False)
