"""``personify rules list|explain``: the rules engine, and why a customer got (or not) a tag."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from personify import clock
from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now

if TYPE_CHECKING:
    from personify.audiences.realtime import Outcome
    from personify.audiences.rules import Rule

rules_app = typer.Typer(
    help="The rules engine (rules/*.yml): ordered rules that assign personalization tags.",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules", rich_help_panel="Audiences")


def _rule(rule: Rule, order: int) -> dict[str, Any]:
    return {
        "order": order,
        "id": rule.id,
        "tag": rule.tag,
        "description": rule.description,
        "condition": rule.when.source,
        "sql": rule.when.sql,
        "variables": {name: e.source for name, e in rule.variables},
        "priority": rule.priority,
        "group": rule.group,
        "ttl_seconds": rule.ttl.total_seconds() if rule.ttl else None,
        "expires_at": rule.expires_at,
        "enabled": rule.enabled,
        "file": rule.file,
        "line": rule.line,
    }


@rules_app.command("list")
def list_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Every rule, in evaluation order."""
    from personify.audiences.stage import project_rules
    from personify.session import open_session

    with open_session(project) as session:
        rules = project_rules(session.project)
    rows = [_rule(r, i + 1) for i, r in enumerate(rules)]
    if json:
        emit_json({"rules": rows})
        return
    table = Table("#", "rule", "tag", "group", "priority", "when")
    for row in rows:
        table.add_row(
            str(row["order"]),
            row["id"],
            row["tag"],
            row["group"] or "",
            str(row["priority"]),
            row["condition"],
        )
    console().print(table)


@rules_app.command("apply")
def apply_command(
    project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """Evaluate every rule over every customer now and update customer_tags (as `run` does)."""
    from personify.audiences.batch import write_tags
    from personify.audiences.stage import project_rules
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        rules = project_rules(session.project)
        counts = write_tags(session.warehouse, rules, now=clock.now())
    document = {"now": clock.now(), **vars(counts)}
    if json:
        emit_json(document)
        return
    console().print(
        f"{counts.rules} rule(s): {counts.tagged:,} tag(s) held, {counts.added:,} added, "
        f"{counts.removed:,} removed, {counts.updated:,} updated"
    )


def _outcome(outcome: Outcome, order: int) -> dict[str, Any]:
    return {
        **_rule(outcome.rule, order),
        "fields": outcome.fields,
        "matched": outcome.matched,
        "assigned": outcome.assigned,
        "reason": outcome.reason,
        "checks": [
            {"sql": c.sql, "values": c.operands, "result": c.result} for c in outcome.checks
        ],
        "values": outcome.variables,
    }


@rules_app.command("explain")
def explain_command(
    customer: Annotated[str, typer.Argument(help="A customer id, an email or another identifier.")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Every rule for one customer: its condition, the fields it reads and their values,
    whether it matched and why it did or did not assign its tag."""
    from personify.audiences.realtime import explain_profile, find_profile
    from personify.audiences.stage import customer_tags, project_rules
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        rules = project_rules(session.project)
        profile = find_profile(session.warehouse, customer, resolve=_resolver(session.project))
        outcomes = explain_profile(rules, profile, clock.now())
        stored = customer_tags(session.warehouse, str(profile["customer_id"]))
    document = {
        "customer_id": profile["customer_id"],
        "now": clock.now(),
        "rules": [_outcome(o, i + 1) for i, o in enumerate(outcomes)],
        "tags": [
            {"tag": o.rule.tag, "rule": o.rule.id, "variables": o.variables}
            for o in outcomes
            if o.assigned
        ],
        "stored_tags": stored,
    }
    if json:
        emit_json(document)
        return
    _print_explanation(document)


def _resolver(project: Any) -> Any:
    def resolve(wh: Any, text: str) -> str:
        from personify.profiles.read import resolve_customer

        return resolve_customer(wh, text, project)

    return resolve


def _show(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def _print_explanation(document: dict[str, Any]) -> None:
    out = console()
    out.print(
        f"customer [bold]{document['customer_id']}[/] at {document['now']:%Y-%m-%d %H:%M:%S}Z"
    )
    for rule in document["rules"]:
        mark = "[green]✓[/]" if rule["assigned"] else ("·" if rule["matched"] else "✗")
        out.print(f"\n{mark} {rule['order']}. [bold]{rule['id']}[/] → tag {rule['tag']}")
        out.print(f"   when: {rule['condition']}")
        for field, value in rule["fields"].items():
            out.print(f"   {field} = {_show(value)}", markup=False)
        for check in rule["checks"]:
            values = ", ".join(_show(v) for v in check["values"])
            out.print(f"   {check['sql']}   ({values}) → {_show(check['result'])}", markup=False)
        out.print(f"   {rule['reason']}", markup=False)
        if rule["values"]:
            shown = ", ".join(f"{k}={_show(v)}" for k, v in rule["values"].items())
            out.print(f"   variables: {shown}", markup=False)
    if not document["rules"]:
        out.print("no rules yet: add a .yml file to rules/ (see README.md)")
    tags = ", ".join(t["tag"] for t in document["tags"]) or "none"
    out.print(f"\ntags now: {tags}")
    stored = ", ".join(t["tag"] for t in document["stored_tags"]) or "none"
    out.print(f"tags stored by the last run: {stored}")
