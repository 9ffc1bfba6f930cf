"""``personify render TEMPLATE --customer ID_OR_EMAIL``: one email, as its journey would send it."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    app,
    emit_json,
    out_file,
    pin_now,
    write_out,
)

if TYPE_CHECKING:
    from personify.journeys.gates import Gate


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


def _vars_file(path: Path) -> Any:
    """The JSON document in ``--vars``'s file; a missing or malformed file is a usage error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(
            f"cannot read {path}: {e.strerror or e}", param_hint="--vars"
        ) from None
    try:
        return jsonlib.loads(text)
    except ValueError as e:
        where = (
            f" (line {e.lineno}, column {e.colno})"
            if isinstance(e, jsonlib.JSONDecodeError)
            else ""
        )
        raise typer.BadParameter(
            f"{path} is not JSON{where}: {getattr(e, 'msg', e)}", param_hint="--vars"
        ) from None


def _verdict(gate: Gate) -> str:
    """What a send at --now would do, in words."""
    from personify.journeys.gates import HELD, SEND

    if gate.outcome == SEND:
        return "a send now would go out"
    if gate.outcome == HELD:
        assert gate.until is not None
        return f"a send now would wait: {gate.reason} until {gate.until.isoformat()}"
    return f"a send now would not go out ({gate.outcome}): {gate.reason}"


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
        typer.Option(
            "--var",
            help="A template variable NAME=VALUE (VALUE may be JSON); repeat. Wins over the "
            "journey's variable of that name.",
        ),
    ] = None,
    vars_file: Annotated[
        Path | None,
        typer.Option(
            "--vars",
            help="A JSON file holding an object of template variables (--var wins over it; both "
            "win over the journey's).",
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Render one email for one customer, as it would be sent at --now: the HTML (or with --json
    the subject, HTML, text part, headers and the journey it came from).

    When a journey sends TEMPLATE (journeys/*.yml), its send step's variables are computed for
    the customer as the send computes them: the cart of their latest entry into the journey, its
    recommendations, new arrivals, tag variables, and the discount code already issued for that
    message — else the placeholder PREVIEW-CODE (a preview issues no code and writes nothing).
    A customer with no open cart in the journey is an error naming a few customers who have one;
    --var / --vars give or replace variables. The journey used is shown on stderr, and whether a
    send at --now would go out or not and why (suppressed, no consent, goal reached, quiet hours
    until when, frequency cap: the send's own checks; with --json under "send_now")."""
    from personify import clock
    from personify.delivery import prepare_one
    from personify.journeys import preview, preview_template, project_journeys
    from personify.journeys.preview import describe, send_now
    from personify.messages import read_customer, template_store
    from personify.session import open_session

    pin_now(now)
    out_file(out)
    variables: dict[str, Any] = {}
    if vars_file is not None:
        loaded = _vars_file(vars_file)
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must hold a JSON object", param_hint="--vars")
        variables.update(loaded)
    variables.update(_variables(var or []))
    at = clock.now()
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        person = read_customer(wh, customer, proj)
        journeys = project_journeys(proj)
        found = preview(
            wh,
            proj,
            journeys,
            template,
            str(person["customer_id"]),
            now=at,
            given=set(variables),
        )
        gate = send_now(wh, proj, journeys, str(person["customer_id"]), found, now=at)
        if found is None:  # no journey sends it: the caller's variables only
            envelope = prepare_one(
                proj,
                template_store(proj).get(template),
                person,
                variables,
                key=f"preview:{template}",  # the same tracked links however the customer is named
                date=at,
            )
        else:  # as the journey's send makes it: its message key, variables and purpose
            envelope = prepare_one(
                proj,
                preview_template(proj, found),
                person,
                {**found.variables, **variables},
                # links and pixel signed for a key no message has: a marketer clicking a preview
                # records nothing as the customer's click or open (the rest is the sent email)
                key=f"preview:{found.key}",
                date=at,
                purpose=found.purpose,
            )
    message = envelope.message
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    if out is not None:
        write_out(out, html)
    if json:
        journey = None
        if found is not None:
            journey = {
                "name": found.journey,
                "step": found.step,
                "trigger_key": found.trigger_key,
                "message_status": found.status,
                "message_key": found.key,
                "variant": found.variant,
                "discount_placeholder": found.placeholder,
                "notes": list(found.notes),
            }
        emit_json(
            {
                "template": template,
                "customer_id": envelope.customer_id,
                "subject": envelope.subject,
                "html": html,
                "text": text,
                "headers": {k: str(v) for k, v in message.items()},
                "out": str(out) if out is not None else None,
                "journey": journey,
                "send_now": gate.as_dict(),
            }
        )
        return
    if found is not None:
        sys.stderr.write(f"render: {describe(found)}\n")
        for note in found.notes:
            sys.stderr.write(f"  note: {note}\n")
    sys.stderr.write(f"render: {_verdict(gate)}\n")
    if out is None:
        sys.stdout.write(html)
