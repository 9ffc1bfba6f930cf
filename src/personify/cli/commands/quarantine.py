"""``personify quarantine list|show|replay``: inputs kept aside, and their second chance."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, ProjectOpt, app, console, emit_json

quarantine_app = typer.Typer(
    help="The quarantine: inputs kept aside with a reason; list, show, replay.\n\n"
    "Inputs kept aside with a reason (invalid events, plan violations, "
    "conflicting duplicates, bad file, webhook and list rows). List them, look at one, replay "
    "events and webhook deliveries after a fix.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine", rich_help_panel="Pipeline")

SourceOpt = Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", "-r", help="Only this reason (e.g. missing_required).")
]


@quarantine_app.command("list")
def list_command(
    source: SourceOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = 50,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """Quarantined inputs, newest first, with counts per source and reason."""
    from personify.ingest.tracking.replay import counts, entries
    from personify.session import open_session

    with open_session(project) as session:
        wh = session.warehouse
        rows = entries(wh, source=source, reason=reason, limit=limit)
        totals = counts(wh)
    if json:
        emit_json(
            {
                "counts": [{"source": s, "reason": r, "rows": n} for s, r, n in totals],
                "rows": [{k: v for k, v in asdict(e).items() if k != "payload"} for e in rows],
            }
        )
        return
    out = console()
    table = Table("id", "source", "received", "reason", "where", "detail")
    for e in rows:
        table.add_row(
            e.id[:12],
            e.source,
            f"{e.received_at:%Y-%m-%d %H:%M:%S}",
            e.reason,
            e.location or "",
            e.detail[:80],
        )
    out.print(table, markup=False)
    summary = ", ".join(f"{s}/{r}: {n:,}" for s, r, n in totals) or "empty"
    out.print(f"quarantine: {summary}", markup=False)


@quarantine_app.command("show")
def show_command(
    id: Annotated[str, typer.Argument(help="A row's id (or the start of it, as `list` shows).")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """One quarantined input: reason, detail, location and the payload as received."""
    from personify.ingest.tracking.replay import entry
    from personify.session import open_session

    with open_session(project) as session:
        e = entry(session.warehouse, id)
    if json:
        emit_json(asdict(e))
        return
    out = console()
    for key in ("id", "source", "received_at", "reason", "location", "detail"):
        out.print(f"{key}: {getattr(e, key)}", markup=False)
    out.print("payload:", markup=False)
    out.print(e.payload or "", markup=False)


@quarantine_app.command("replay")
def replay_command(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Rows to replay (ids or id prefixes; default: all).")
    ] = None,
    source: SourceOpt = None,
    reason: ReasonOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """Re-ingest quarantined events and webhook deliveries after a fix.

    Re-ingest quarantined tracking events with the tracking plan as it is now, and webhook
    deliveries with their source's mapping and rules as they are now: what passes is stored
    (once, whatever the number of replays) and leaves the quarantine."""
    from personify.ingest.tracking.replay import replay
    from personify.session import open_session

    with open_session(project) as session:
        report = replay(
            session.warehouse, session.project, source=source, reason=reason, ids=ids or ()
        )
    document: dict[str, Any] = {
        "looked_at": report.looked_at,
        "stored": report.stored,
        "already_stored": report.already_stored,
        "still_quarantined": [
            {"id": i, "reason": r, "detail": d} for i, r, d in report.still_quarantined
        ],
        "skipped": [{"id": i, "why": w} for i, w in report.skipped],
    }
    if json:
        emit_json(document)
        return
    out = console()
    out.print(
        f"looked at {report.looked_at:,}: stored {report.stored:,}, already stored "
        f"{report.already_stored:,}, still quarantined {len(report.still_quarantined):,}, "
        f"skipped {len(report.skipped):,}",
        markup=False,
    )
    for i, r, d in report.still_quarantined[:20]:
        out.print(f"  {i[:12]} {r}: {d}", markup=False)
