"""``personify import``: load one CSV, JSON Lines or Parquet file into a modelled table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

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
from personify.config import TableName

TABLES = ", ".join(get_args(TableName))


def _mapping(pairs: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        column, sep, field = pair.partition("=")
        if not sep or not column.strip() or not field.strip():
            raise typer.BadParameter(
                f"{pair!r} is not COLUMN=FIELD (e.g. customer_id=id, email=contact.email)",
                param_hint="--map",
            )
        mapping[column.strip()] = field.strip()
    return mapping


@app.command("import", rich_help_panel="Pipeline")
def import_command(
    file: Annotated[Path, typer.Argument(help="The file: .csv, .jsonl or .parquet.")],
    table: Annotated[
        str, typer.Option("--table", "-t", help=f"Target table: {TABLES}.", show_default=False)
    ],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            "-m",
            help="COLUMN=FIELD, repeatable; dots reach into nested JSON (email=contact.email).",
        ),
    ] = None,
    source: Annotated[
        str, typer.Option("--source", "-s", help="Source name recorded on every row.")
    ] = "import",
    format_: Annotated[
        str | None,
        typer.Option("--format", help="csv, jsonl or parquet (default: from the suffix)."),
    ] = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="CSV field delimiter.")] = ",",
    corrects: Annotated[
        bool,
        typer.Option(
            "--corrects",
            help="The file is a corrected version of the one imported before at this path: "
            "that version's quarantined rows leave the quarantine (rows still bad are kept, "
            "once; fixed ones load).",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Import one file: valid rows load, invalid ones go to the quarantine with the reason.

    Importing the same file again under the same --source loads nothing. The validation rules
    (quality.rules) run after a file loaded rows, as after a sync; `personify status` shows
    what they found.
    """
    from personify.config import FileFormat
    from personify.quality.rules import after_load
    from personify.session import open_session
    from personify.sources.files import import_file

    pin_now(now)
    if table not in get_args(TableName):
        raise typer.BadParameter(f"{table!r} is not one of: {TABLES}", param_hint="--table")
    if format_ is not None and format_ not in get_args(FileFormat):
        raise typer.BadParameter("use csv, jsonl or parquet", param_hint="--format")
    mapping = _mapping(map_)
    with open_session(project) as session, progress_bars(enabled=not json) as progress:
        result = import_file(
            session,
            file.expanduser().absolute(),
            table=table,
            mapping=mapping,
            source_name=source,
            format=format_,  # type: ignore[arg-type]
            delimiter=delimiter,
            progress=progress,
            corrects=corrects,
        )
        if result.counts["rows_loaded"] or result.counts["rows_quarantined"]:
            after_load(session, "import")  # the validation rules (quality.rules), if configured
    if json:
        emit_json(
            {
                "file": str(file),
                "table": table,
                "source": source,
                "seconds": round(result.seconds, 3),
                "counts": result.counts,
            }
        )
        return
    print_counts(
        f"Import {file.name} → {table}",
        result.counts,
        quarantine_source=source,
        order="received_at DESC",
    )
    if not result.counts["rows_quarantined"] and result.counts["files_skipped"]:
        console().print(f"already imported under source {source!r}: nothing loaded")
    if table == "customers" and result.counts["rows_loaded"]:
        console().print(
            "person records are kept as they came, in customer_records; `personify run` (or "
            "`serve`'s next cycle) resolves them into customers and their profiles"
        )
