"""``personify lists upload|list|show|delete``: uploaded lists segments can read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.table import Table

from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    app,
    console,
    emit_json,
    pin_now,
    print_counts,
)
from personify.cli.progress import progress_bars

lists_app = typer.Typer(
    help="Uploaded lists (a CSV, JSON Lines or Parquet file of emails, phones or ids): segments "
    "read their "
    "customers from the list_customers view.",
    no_args_is_help=True,
)
app.add_typer(lists_app, name="lists", rich_help_panel="Audiences")

NameArg = Annotated[str, typer.Argument(help="The list's name (letters, digits, '_' and '-').")]


@lists_app.command("upload")
def upload_command(
    name: NameArg,
    file: Annotated[
        Path,
        typer.Argument(help="The file: .csv, .jsonl / .ndjson (one object a line) or .parquet."),
    ],
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            "-c",
            help="Column (JSON Lines: key) holding the identifiers (default: the one named as "
            "--kind, or the file's only column; JSON Lines: the keys of its first object).",
        ),
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            "-k",
            help="What the column holds: email, phone, user_id, customer_id, anonymous_id or a "
            "source's own id kind (<source>_id).",
        ),
    ] = "email",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="The list becomes exactly the file's identifiers, in one transaction "
            "(default: they are added to it).",
        ),
    ] = False,
    format_: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the suffix)."),
    ] = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="CSV field delimiter.")] = ",",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Upload a file of identifiers into a list (created on first upload).

    Each identifier is normalized as identity does (emails lower-cased, phones to E.164 with
    identity.phone_region for national numbers); rows that are none — or are identity.blocked
    values, which match nobody (blocked_value), or JSON Lines lines that are not objects — go to
    the quarantine with the file, line and reason (source list:NAME). Uploading the same file
    again adds nothing.
    Segments read the list's customers — matched through identities when read, so people who
    become customers later join it:
    `SELECT customer_id FROM list_customers WHERE list = 'NAME'`.
    """
    from personify.audiences.lists import source_of, upload_list
    from personify.config import FileFormat
    from personify.session import open_session

    pin_now(now)
    if format_ is not None and format_ not in get_args(FileFormat):
        raise typer.BadParameter("use csv, jsonl or parquet", param_hint="--format")
    with open_session(project) as session, progress_bars(enabled=not json) as progress:
        result = upload_list(
            session,
            name,
            file.expanduser().absolute(),
            kind=kind,
            column=column,
            replace=replace,
            format=format_,  # type: ignore[arg-type]
            delimiter=delimiter,
            progress=progress,
        )
    if json:
        emit_json(
            {
                "list": name,
                "kind": kind,
                "file": result.file,
                "form": result.form,
                "replace": replace,
                "seconds": round(result.seconds, 3),
                "counts": result.counts,
            }
        )
        return
    print_counts(
        f"Upload {file.name} → list {name} ({kind})",
        result.counts,
        quarantine_source=source_of(name),
        order="location",
    )


@lists_app.command("list")
def list_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Every list: kinds, members, customers matched now, uploads, quarantined rows."""
    from personify.audiences.lists import list_lists
    from personify.session import open_session

    with open_session(project) as session:
        rows = list_lists(session.warehouse)
    if json:
        emit_json({"lists": rows})
        return
    table = Table("list", "kinds", "members", "customers", "uploads", "quarantined", "last upload")
    for row in rows:
        last = row["last_upload"]
        table.add_row(
            row["list"],
            ", ".join(row["kinds"]),
            f"{row['members']:,}",
            f"{row['customers']:,}",
            f"{row['uploads']:,}",
            f"{row['quarantined']:,}",
            f"{last:%Y-%m-%d %H:%M}Z" if last else "never",
        )
    out = console()
    out.print(table)
    if not rows:
        out.print("no lists yet: `personify lists upload NAME FILE` makes one")


@lists_app.command("show")
def show_command(
    name: NameArg,
    sample: Annotated[int, typer.Option("--sample", min=0, help="Customer ids shown.")] = 10,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """One list: members per kind, customers matched now (a sample), every upload."""
    from personify.audiences.lists import show_list
    from personify.session import open_session

    with open_session(project) as session:
        info: dict[str, Any] = show_list(session.warehouse, name, sample=sample)
    if json:
        emit_json(info)
        return
    out = console()
    kinds = ", ".join(f"{k}: {n:,}" for k, n in info["by_kind"].items()) or "none"
    out.print(f"[bold]{name}[/] — members {info['members']:,} ({kinds}); customers matched now "
              f"{info['customers']:,}")  # fmt: skip
    if info["sample"]:
        out.print("sample: " + ", ".join(info["sample"]), markup=False)
    if info["stale_kinds"]:
        out.print(
            f"[yellow]the {', '.join(info['stale_kinds'])} values were stored under another "
            "encryption setting than the project's now (privacy.encrypted_fields / "
            "blind_index_key): they match nobody — upload the file again with --replace[/]"
        )
    table = Table("uploaded", "file", "kind", "read", "added", "duplicate", "quarantined")
    for u in info["uploads"]:
        table.add_row(
            f"{u['uploaded_at']:%Y-%m-%d %H:%M:%S}Z" + (" (replace)" if u["replaced"] else ""),
            u["file"],
            u["kind"],
            f"{u['rows_read']:,}",
            f"{u['rows_added']:,}",
            f"{u['rows_duplicate']:,}",
            f"{u['rows_quarantined']:,}",
        )
    out.print(table)


@lists_app.command("delete")
def delete_command(
    name: NameArg, project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """Delete a list: its members, its upload history and its quarantined rows. Segments that
    read it then find nobody on it."""
    from personify.audiences.lists import delete_list
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        counts = delete_list(session.warehouse, name)
    if json:
        emit_json({"list": name, "deleted": counts})
        return
    console().print(
        f"list {name} deleted: {counts['members']:,} members, {counts['uploads']:,} uploads, "
        f"{counts['quarantined']:,} quarantined rows"
    )
