"""``personify segments list|show|preview|refresh``: SQL segments and their memberships."""

from __future__ import annotations

from dataclasses import replace
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
    err_console,
    pin_now,
)

if TYPE_CHECKING:
    from personify.audiences.segments import Segment

segments_app = typer.Typer(
    help="SQL segments (segments/*.sql): definitions, sizes, previews, refreshes.",
    no_args_is_help=True,
)
app.add_typer(segments_app, name="segments", rich_help_panel="Audiences")

NameArg = Annotated[str, typer.Argument(help="The segment's name (see `personify segments list`).")]


def _definition(segment: Segment) -> dict[str, Any]:
    return {
        "name": segment.name,
        "description": segment.description,
        "dialect": segment.dialect,
        "refresh": str(segment.refresh),
        "real_time": segment.real_time,
        "ranks": segment.ranks,
        "file": str(segment.file),
    }


def _refresh(segment: Segment) -> str:
    """``real-time``, ``real-time (whole: LIMIT)`` for a segment that ranks, ``every 1h`` …"""
    if segment.real_time == "whole":
        return f"{segment.refresh} (whole: {segment.ranks})"
    return str(segment.refresh)


@segments_app.command("list")
def list_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Every segment: definition, current size, sendable size, last refresh."""
    from personify.audiences.memberships import segment_status
    from personify.audiences.stage import project_segments
    from personify.session import open_session

    with open_session(project) as session:
        segments = project_segments(session.project)
        purpose = session.project.config.audiences.purpose
        status = segment_status(session.warehouse, [s.name for s in segments], purpose=purpose)
    rows = [{**_definition(s), "purpose": purpose, **vars(status[s.name])} for s in segments]
    if json:
        emit_json({"segments": rows})
        return
    by_name = {s.name: s for s in segments}
    table = Table("segment", "refresh", "dialect", "members", f"sendable ({purpose})", "refreshed")
    for row in rows:
        refreshed = row["refreshed_at"]
        table.add_row(
            row["name"],
            _refresh(by_name[row["name"]]),
            row["dialect"],
            f"{row['members']:,}",
            f"{row['sendable']:,}",
            f"{refreshed:%Y-%m-%d %H:%M}Z" if refreshed else "never",
        )
    out = console()
    out.print(table)
    if not rows:
        out.print("no segments yet: add a .sql file to segments/ (see README.md)")


@segments_app.command("show")
def show_command(
    name: NameArg, project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """One segment: its header, its SQL as written and as run at --now, its stored state."""
    from personify.audiences.memberships import segment_status
    from personify.audiences.stage import find_segment
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        segment = find_segment(session.project, name)
        purpose = session.project.config.audiences.purpose
        status = segment_status(session.warehouse, [name], purpose=purpose)[name]
        sql = session.warehouse.render(segment.members_query())
    document = {
        **_definition(segment),
        "source": segment.source,
        "sql": sql,
        "now": clock.now(),
        "purpose": purpose,
        **vars(status),
    }
    if json:
        emit_json(document)
        return
    out = console()
    out.print(f"[bold]{segment.name}[/] — {segment.description or 'no description'}")
    out.print(f"file: {segment.file}  dialect: {segment.dialect}  refresh: {_refresh(segment)}")
    if segment.real_time == "whole":
        out.print(
            f"it ranks customers against each other ({segment.ranks}): every real-time pass "
            "refreshes it whole, for everyone"
        )
    refreshed = status.refreshed_at
    out.print(
        f"members: {status.members:,}  sendable ({purpose}): {status.sendable:,}  "
        f"last refresh: {f'{refreshed:%Y-%m-%d %H:%M}Z' if refreshed else 'never'}"
    )
    out.print("As written:")
    out.print(segment.source.strip(), markup=False)
    out.print(f"As run at {clock.now():%Y-%m-%d %H:%M:%S}Z:")
    out.print(sql, markup=False)


@segments_app.command("preview")
def preview_command(
    name: NameArg,
    sample: Annotated[
        int | None, typer.Option("--sample", help="Rows to show (default: audiences.sample_size).")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Run a segment now, read-only: its size, a sample, the SQL as run, the time taken."""
    from personify.audiences.stage import find_segment, preview
    from personify.privacy.fields import decrypt_result
    from personify.privacy.masking import mask_rows
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        settings = session.project.config.audiences
        segment = find_segment(session.project, name)
        result = preview(
            session.warehouse,
            segment,
            sample=settings.sample_size if sample is None else max(0, sample),
            timeout_s=settings.timeout_seconds,
        )
        # encrypted fields in plain text, or masked where the project masks SQL results
        rows = decrypt_result(session.warehouse, list(result.columns), list(result.rows))
        if session.project.config.privacy.mask_sql:
            rows = mask_rows(
                list(result.columns), rows, sql=result.sql, dialect=session.warehouse.dialect
            )
        result = replace(result, rows=rows)
    if json:
        emit_json(
            {
                "name": segment.name,
                "now": clock.now(),
                "size": result.size,
                "columns": result.columns,
                "sample": [dict(zip(result.columns, r, strict=True)) for r in result.rows],
                "sql": result.sql,
                "seconds": round(result.seconds, 4),
            }
        )
        return
    out = console()
    table = Table(*result.columns, title=f"{segment.name}: sample")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    out.print(table)
    out.print(f"size: {result.size:,} customers at {clock.now():%Y-%m-%d %H:%M:%S}Z")
    out.print(f"time: {result.seconds:.3f} s")
    out.print("SQL as run:")
    out.print(result.sql, markup=False)


@segments_app.command("refresh")
def refresh_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Segments to refresh (default: all).")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Recompute segments now (whatever their schedule) and record entries and exits.

    A segment whose SQL the warehouse refuses (an error found when it runs, its timeout, its
    member cap) keeps its memberships while the others are refreshed, as in `personify run`:
    the error (its file, the database's message) is printed and the command exits 1;
    `personify status` shows it until the segment refreshes.
    """
    from personify.audiences.stage import failed_segments, find_segment, project_segments, refresh
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        chosen = (
            [find_segment(session.project, n) for n in names]
            if names
            else project_segments(session.project)
        )
        results, failed = refresh(session, chosen, force=True)
    errors = failed_segments(failed, {}).problems if failed else []
    rows: list[dict[str, Any]] = [
        {
            "segment": r.segment,
            "members": r.members,
            "entered": r.entered,
            "exited": r.exited,
            "seconds": round(r.seconds, 4),
        }
        for r in results
    ]
    if json:
        emit_json(
            {
                "now": clock.now(),
                "refreshed": rows,
                "failed": [{"segment": f.segment, "file": f.file, "kind": f.kind} for f in failed],
                "errors": errors,
            }
        )
        if errors:
            raise typer.Exit(1)
        return
    table = Table("segment", "members", "entered", "exited", "seconds", title="Refreshed")
    for row in rows:
        table.add_row(
            row["segment"],
            f"{row['members']:,}",
            f"{row['entered']:,}",
            f"{row['exited']:,}",
            f"{row['seconds']:.3f}",
        )
    console().print(table)
    for error in errors:  # the others were refreshed; said on stderr, after the table
        err_console().print(f"error: {error}", markup=False)
    if errors:
        raise typer.Exit(1)
