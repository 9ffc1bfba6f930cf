"""``personify reconcile [SOURCE…] [--repair]``: compare sources with the warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now

if TYPE_CHECKING:
    from personify.quality import ReconcileReport


@app.command("reconcile", rich_help_panel="Pipeline")
def reconcile_command(
    sources: Annotated[
        list[str] | None, typer.Argument(help="REST or file source names (default: all of them).")
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Re-sync the keys missing in the warehouse or mismatched (through the sync's "
            "mapping and validation); keys missing at the source are reported, never deleted.",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Exit with code 1 when discrepancies (not pending) are left (CI)."
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Compare sources with the warehouse: counts, keys missing on either side, fields that differ.

    Each REST source is read whole through its API (as its sync reads it), each file source
    file by file, and joined with the stored rows in the warehouse. Records changed at the
    source after the last sync (or in files not imported yet) are *pending* (the next sync
    brings them), not errors. The run and its discrepant keys are
    stored (`reconciliation_runs`, `reconciliation_discrepancies`); more discrepancies than
    `quality.reconcile.threshold` flag the run for review in `personify status`.
    """
    from personify.quality import reconcile
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        report = reconcile(session, sources or None, repair=repair)
    if json:
        emit_json(report.to_dict())
    else:
        _print(report)
    if check and report.unresolved:
        raise typer.Exit(1)


def _print(report: ReconcileReport) -> None:
    out = console()
    table = Table(
        "source",
        "resource",
        "table",
        "at source",
        "stored",
        "matched",
        "not stored",
        "gone at source",
        "differ",
        "pending",
        "repaired",
        title="Reconciliation",
        caption="not stored: missing in the warehouse; gone at source: stored, no longer at the "
        "source; differ: fields differ; pending: changed at the source after the last sync",
    )
    for t in report.tables:
        table.add_row(
            t.source,
            t.resource,
            t.table,
            f"{t.source_rows:,}",
            f"{t.warehouse_rows:,}",
            f"{t.matched:,}",
            f"{t.missing_in_warehouse:,}",
            f"{t.missing_at_source:,}",
            f"{t.mismatched:,}",
            f"{t.pending:,}",
            f"{t.repaired:,}",
        )
    out.print(table)
    for t in report.tables:
        if t.fields:
            fields = ", ".join(f"{k} ({v})" for k, v in sorted(t.fields.items()))
            out.print(f"{escape(t.source)}/{escape(t.table)}: fields differing: {escape(fields)}")
        for s in t.sample:
            pending = " (pending)" if s["pending"] else ""
            what = f" [{', '.join(s['fields'])}]" if s["fields"] else ""
            out.print(
                f"  {escape(t.table)} {escape(s['key'])}: {s['kind']}{escape(what)}{pending}",
                markup=True,
            )
    colour = "red" if report.flagged else "yellow" if report.unresolved else "green"
    verdict = (
        f"{report.discrepancies} discrepancies, {report.pending} pending, "
        f"{report.repaired} repaired (threshold {report.threshold})"
    )
    if report.flagged:
        verdict += " — flagged for review"
    out.print(f"[{colour}]{report.status}: {escape(verdict)}[/]  run {report.run_id}")
