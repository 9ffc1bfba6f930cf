"""``personify render TEMPLATE --customer ID_OR_EMAIL``: one email, exactly as it would be sent."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, emit_json, pin_now


def _variables(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, lists, objects) is taken as such."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        if not eq or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        try:
            value: Any = jsonlib.loads(raw)
        except ValueError:
            value = raw
        out[name.strip()] = value
    return out


@app.command("render", rich_help_panel="Email")
def render_command(
    template: Annotated[str, typer.Argument(help="Template name (templates/NAME.liquid).")],
    customer: Annotated[
        str, typer.Option("--customer", "-c", help="Customer id, email or kind:value identifier.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the HTML here instead of stdout.")
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="A template variable NAME=VALUE (VALUE may be JSON); repeat."),
    ] = None,
    vars_file: Annotated[
        Path | None,
        typer.Option("--vars", help="A JSON file holding an object of template variables."),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Render one email for one customer, exactly as it would be sent: the HTML (or with --json
    the subject, HTML, text part and headers)."""
    from personify.delivery import prepare
    from personify.session import open_session

    pin_now(now)
    variables: dict[str, Any] = {}
    if vars_file is not None:
        loaded = jsonlib.loads(vars_file.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must hold a JSON object", param_hint="--vars")
        variables.update(loaded)
    variables.update(_variables(var or []))
    with open_session(project) as session:
        envelope = prepare(
            session.warehouse,
            session.project,
            template,
            customer,
            variables,
            key=f"preview:{template}",  # the same tracked links however the customer is named
        )
    message = envelope.message
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    if out is not None:
        out.write_text(html, encoding="utf-8")
    if json:
        emit_json(
            {
                "template": template,
                "customer_id": envelope.customer_id,
                "subject": envelope.subject,
                "html": html,
                "text": text,
                "headers": {k: str(v) for k, v in message.items()},
                "out": str(out) if out is not None else None,
            }
        )
    elif out is None:
        sys.stdout.write(html)
