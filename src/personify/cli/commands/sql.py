"""``personify sql``: one read-only SELECT on the warehouse."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now

# personify.warehouse.query's defaults, spelled out: importing it (pyarrow, sqlglot) cost every
# start of the program ~0.5 s, --help included (a test pins that the two agree)
DEFAULT_MAX_ROWS = 10_000
DEFAULT_TIMEOUT_S = 30.0


def _known_dialect(value: str | None) -> str | None:
    """``--dialect``: a name sqlglot knows, else a usage error listing them."""
    if value is None:
        return None
    from personify.warehouse.safety import dialect_names

    names = dialect_names()
    if value.lower() not in names:
        raise typer.BadParameter(
            f"unknown dialect {value!r}; use one of: {', '.join(names)}", param_hint="--dialect"
        )
    return value.lower()


def _positive_seconds(value: float) -> float:
    if not value > 0:  # also refuses NaN
        raise typer.BadParameter(
            f"{value} is not a number of seconds above 0", param_hint="--timeout"
        )
    return value


@app.command("sql", rich_help_panel="People")
def sql_command(
    query: Annotated[str, typer.Argument(help="One SELECT statement.")],
    dialect: Annotated[
        str | None,
        typer.Option(
            "--dialect",
            "-d",
            help="Dialect QUERY is written in (mysql, postgres, snowflake, bigquery, …); "
            "it is transpiled to the warehouse's.",
            callback=_known_dialect,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--max-rows", min=1, help="Stop after this many rows (1 or more).")
    ] = DEFAULT_MAX_ROWS,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds before the query is stopped (above 0).",
            callback=_positive_seconds,
        ),
    ] = DEFAULT_TIMEOUT_S,
    mask: Annotated[
        bool | None,
        typer.Option(
            "--mask/--no-mask",
            help="Mask personal data in the result (emails, phones, names, IPs). Default: "
            "privacy.mask_sql in personify.yml (off).",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Run one read-only SELECT on the warehouse and print the rows.

    Anything but a single SELECT over the warehouse's tables (and the tables personify.yml
    names under `relations:`) is refused: DDL, DML, several statements, and table functions
    that read files or URLs. CURRENT_DATE and NOW() follow --now.
    Encrypted fields (privacy.encrypted_fields) show in plain text, masked with --mask; a
    customers column's value decrypts when the query also selects that row's customer_id.

    Example: `personify sql "SELECT count(*) FROM customers" --json`
    """
    from personify.audiences.relations import missing_in, project_relations, qualify
    from personify.errors import WarehouseError
    from personify.privacy.fields import decrypt_result
    from personify.privacy.masking import mask_rows
    from personify.session import open_session
    from personify.warehouse.query import run_user_query

    pin_now(now)
    with open_session(project) as session:
        relations = project_relations(session.project)
        try:
            result = run_user_query(
                session.warehouse,
                query,
                dialect=dialect,
                max_rows=limit,
                timeout_s=timeout,
                names=[r.name for r in relations],
                rewrite=functools.partial(qualify, relations=relations),
            )
        except WarehouseError as e:  # a relation of personify.yml naming a missing table
            missing = missing_in(e, {r.name: r for r in relations})
            if type(e) is not WarehouseError or missing is None:
                raise
            raise missing.missing(e.message.splitlines()[0][:200]) from e
        # encrypted fields in plain text (customers' values when customer_id is selected too),
        # then masked for those who must not see them
        result = replace(
            result,
            rows=decrypt_result(session.warehouse, list(result.columns), list(result.rows)),
        )
        if mask if mask is not None else session.project.config.privacy.mask_sql:
            masked = mask_rows(
                list(result.columns),
                list(result.rows),
                sql=result.sql,
                dialect=session.warehouse.dialect,
            )
            result = replace(result, rows=masked)
    if json:
        emit_json(
            {
                "columns": result.columns,
                "rows": [dict(zip(result.columns, r, strict=True)) for r in result.rows],
                "row_count": len(result.rows),
                "truncated": result.truncated,
                "sql": result.sql,
            }
        )
        return
    table = Table(*result.columns, show_lines=False)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    out = console()
    out.print(table)
    more = f" (stopped at {limit}; raise --max-rows for more)" if result.truncated else ""
    out.print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}{more}")
