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
    from personify.config import Project
    from personify.journeys.definitions import Journey
    from personify.journeys.preview import Preview


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


def given_variables(var: list[str] | None, vars_file: Path | None) -> dict[str, Any]:
    """The variables of ``--vars`` then ``--var`` (which wins)."""
    variables: dict[str, Any] = {}
    if vars_file is not None:
        loaded = _vars_file(vars_file)
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must hold a JSON object", param_hint="--vars")
        variables.update(loaded)
    variables.update(_variables(var or []))
    return variables


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


def journey_doc(found: Preview | None) -> dict[str, Any] | None:
    """The ``journey`` of ``--json``: the step the email came from, ``None`` without one."""
    if found is None:
        return None
    return {
        "name": found.journey,
        "step": found.step,
        "trigger_key": found.trigger_key,
        "message_status": found.status,
        "message_key": found.key,
        "variant": found.variant,
        "discount_placeholder": found.placeholder,
        "notes": list(found.notes),
    }


def variant_line(file: str, locale: str | None) -> str:
    """Which template file was rendered and why: ``welcome.fr.liquid (customer locale fr-CA)``."""
    why = f"customer locale {locale}" if locale else "customer has no locale"
    return f"template {file} ({why})"


def journeys_for(proj: Project, journey: str | None, template: str) -> list[Journey]:
    """The project's journeys, or only ``--journey``'s (which must send ``template``)."""
    from personify.journeys import project_journeys
    from personify.journeys.preview import senders

    journeys = project_journeys(proj)
    if journey is None:
        return journeys
    chosen = [j for j in journeys if j.name == journey]
    if not chosen:
        names = ", ".join(sorted(j.name for j in journeys)) or "none"
        raise typer.BadParameter(
            f"no journey {journey!r} (journeys: {names})", param_hint="--journey"
        )
    if not senders(chosen, template):
        raise typer.BadParameter(
            f"journey {journey!r} does not send {template} (no send step or variant of it)",
            param_hint="--journey",
        )
    return chosen


VarOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--var",
        help="A template variable NAME=VALUE (VALUE may be JSON); repeat. Wins over the "
        "journey's variable of that name.",
    ),
]
VarsOpt = Annotated[
    Path | None,
    typer.Option(
        "--vars",
        help="A JSON file holding an object of template variables (--var wins over it; both "
        "win over the journey's).",
    ),
]
JourneyOpt = Annotated[
    str | None,
    typer.Option(
        "--journey",
        "-j",
        help="The journey whose send step makes the email, when several send TEMPLATE "
        "(default: the one the customer entered last).",
    ),
]


@app.command("render", rich_help_panel="Email")
def render_command(
    template: Annotated[str, typer.Argument(help="Template name (templates/NAME.liquid).")],
    customer: Annotated[
        str, typer.Option("--customer", "-c", help="Customer id, email or kind:value identifier.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the HTML here instead of stdout.")
    ] = None,
    var: VarOpt = None,
    vars_file: VarsOpt = None,
    journey: JourneyOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Render one email for one customer, as it would be sent at --now.

    The HTML (or with --json the subject, HTML, text part, headers and the journey it came
    from).

    When a journey sends TEMPLATE (journeys/*.yml), its send step's variables are computed for
    the customer as the send computes them: the cart of their latest entry into the journey, its
    recommendations, new arrivals, tag variables, and the discount code already issued for that
    message — else the placeholder PREVIEW-CODE (a preview issues no code and writes nothing).
    A customer with no open cart in the journey is an error naming a few customers who have one;
    --var / --vars give or replace variables. The journey used is shown on stderr, and whether a
    send at --now would go out or not and why (suppressed, no consent, goal reached, quiet hours
    until when, frequency cap: the send's own checks; with --json under "send_now").

    A template with locale variants (templates/NAME.fr.liquid, NAME.fr-CA.liquid) renders the
    one the customer's locale chooses (exact locale, then language, then NAME.liquid); the file
    rendered is shown on stderr (with --json: "template_file" and "locale"). Their filters write
    in the template's language (numbers the customer's way when it is theirs: fr-CA): currency,
    date: 'long', and discount_amount for the journey's discount
    ({{ discount | discount_amount }}: 15 %; its last day: discount.expires_on)."""
    from personify import clock
    from personify.journeys.preview import describe, render_preview, verdict
    from personify.messages import read_customer
    from personify.session import open_session

    pin_now(now)
    out_file(out)
    variables = given_variables(var, vars_file)
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        person = read_customer(wh, customer, proj)
        journeys = journeys_for(proj, journey, template)
        shown = render_preview(wh, proj, journeys, template, person, variables, now=clock.now())
    envelope, found, gate = shown.envelope, shown.found, shown.gate
    message = envelope.message
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    text = text_part.get_content() if text_part is not None else ""
    if out is not None:
        write_out(out, html)
    if json:
        emit_json(
            {
                "template": template,
                "template_file": shown.file,
                "locale": shown.locale,
                "customer_id": envelope.customer_id,
                "subject": envelope.subject,
                "html": html,
                "text": text,
                "headers": {k: str(v) for k, v in message.items()},
                "out": str(out) if out is not None else None,
                "journey": journey_doc(found),
                "send_now": gate.as_dict(),
            }
        )
        return
    sys.stderr.write(f"render: {variant_line(shown.file, shown.locale)}\n")
    if found is not None:
        sys.stderr.write(f"render: {describe(found)}\n")
        for note in found.notes:
            sys.stderr.write(f"  note: {note}\n")
    sys.stderr.write(f"render: {verdict(gate)}\n")
    if out is None:
        sys.stdout.write(html)
