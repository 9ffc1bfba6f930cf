"""``personify identity explain A B``: why two identifiers are, or are not, one customer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, ProjectOpt, app, console, emit_json

identity_app = typer.Typer(help="Identity resolution: why identifiers are linked.")
app.add_typer(identity_app, name="identity", rich_help_panel="People")


@identity_app.command("explain")
def explain_command(
    a: Annotated[str, typer.Argument(help="An identifier: kind:value, an email, a customer id.")],
    b: Annotated[str, typer.Argument(help="Another identifier.")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """The chain of evidence (sources, times) linking A and B, or why they are not linked."""
    from personify.identity import explain
    from personify.session import open_session

    with open_session(project) as session:
        answer = explain(session.warehouse, a, b, session.project.config.identity)
    if json:
        emit_json(answer.public())
        return
    out = console()
    verdict = "the same customer" if answer.linked else "not the same customer"
    out.print(f"[bold]{a}[/] and [bold]{b}[/]: {verdict} — {answer.reason}")
    if answer.chain:
        table = Table("from", "to", "source", "evidence", "first input", "first seen", "refused")
        for link in answer.chain:
            table.add_row(
                f"{link['from']['kind']}:{link['from']['value']}",
                f"{link['to']['kind']}:{link['to']['value']}",
                link["source"],
                link["evidence"],
                link["origin"],
                str(link["first_seen"]),
                link["refused"] or "",
            )
        out.print(table)
