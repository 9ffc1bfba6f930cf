"""``personify journeys list|show|check``: the journeys, where customers are in them, what was
sent; whether their files and every template they send are sound."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, ProjectOpt, app, console, emit_json

journeys_app = typer.Typer(
    help="Journeys (journeys/*.yml): definitions, instances and messages; one customer's path; "
    "a check of the files and the templates they send.",
    no_args_is_help=True,
)
app.add_typer(journeys_app, name="journeys", rich_help_panel="Email")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "—"


@journeys_app.command("list")
def list_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Every journey: trigger, steps, instances by status and messages by status."""
    from personify.journeys import project_journeys
    from personify.journeys.report import journeys_report
    from personify.session import open_session

    with open_session(project) as session:
        rows = journeys_report(session.warehouse, project_journeys(session.project))
    if json:
        emit_json({"journeys": rows})
        return
    table = Table("journey", "trigger", "steps", "instances", "messages", title="Journeys")
    for row in rows:
        table.add_row(
            row["name"] + ("" if row["enabled"] else " (disabled)"),
            row["trigger"] + (f"\ngoal: {row['goal']}" if row["goal"] else ""),
            "\n".join(row["steps"]),
            _counts(row["instances"]),
            _counts(row["messages"]),
        )
    console().print(table)


@journeys_app.command("check")
def check_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Check the journey files and the templates they send, without running anything.

    Check every journey file and each template a send step names, as `personify run` does
    before deciding anything: every language version of it (NAME.liquid, NAME.fr.liquid …) with
    its subject, layout and the partials it renders. A mistake exits 2 naming the journey's file,
    line and key and the template's file and line (the run skips the journeys that send it and
    exits 1). Reads no warehouse."""
    from personify.config import load_project
    from personify.journeys import project_journeys
    from personify.journeys.stage import check_templates
    from personify.messages import template_store

    loaded = load_project(project)
    journeys = project_journeys(loaded)
    check_templates(loaded, journeys)
    store = template_store(loaded)
    rows: list[tuple[str, str, list[str]]] = []
    for journey in journeys:
        names = dict.fromkeys(
            name
            for step in journey.steps
            if step.kind == "send"
            for name in (
                step.template,
                *(v.template for v in (step.experiment.variants if step.experiment else ())),
            )
            if name is not None
        )
        files = [file for name in names for file in store.check(name)]
        rows.append((journey.name, journey.file, files))
    if json:
        emit_json(
            {
                "ok": True,
                "journeys": [{"journey": j, "file": f, "templates": t} for j, f, t in rows],
            }
        )
        return
    table = Table("journey", "file", "template files checked", title="Journeys check")
    for name, file, files in rows:
        table.add_row(name, file, ", ".join(files) or "—")
    out = console()
    out.print(table)
    out.print(f"{len(rows)} journeys OK")


@journeys_app.command("show")
def show_command(
    who: Annotated[str, typer.Argument(help="A customer id, email or other identifier.")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """One customer's journeys (step, status, next wake-up) and messages (status and the reason
    of a skip or failure)."""
    from personify.journeys.report import customer_report
    from personify.messages import read_customer
    from personify.session import open_session

    with open_session(project) as session:
        customer = read_customer(session.warehouse, who, session.project)
        report = customer_report(session.warehouse, str(customer["customer_id"]))
    if json:
        emit_json(report)
        return
    out = console()
    instances = Table("journey", "trigger key", "step", "status", "entered", "next step due")
    for i in report["instances"]:
        due = f"{i['wake_at']:%Y-%m-%d %H:%M}Z" if i["status"] == "active" else "—"
        instances.add_row(
            i["journey"],
            i["trigger_key"],
            str(i["step"]),
            i["exit_reason"] or i["status"],
            f"{i['trigger_at']:%Y-%m-%d %H:%M}Z",
            due,
        )
    out.print(instances)
    messages = Table("journey", "step", "template", "status", "when", "why")
    for m in report["messages"]:
        when = m["sent_at"] or m["send_after"] or m["decided_at"]
        messages.add_row(
            m["journey"] or "—",
            m["step"] or "—",
            m["template"],
            m["status"],
            f"{when:%Y-%m-%d %H:%M}Z" if when else "—",
            m["error"] or "",
        )
    out.print(messages)
