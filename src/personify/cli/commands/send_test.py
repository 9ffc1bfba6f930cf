"""``personify send-test TEMPLATE --customer ID_OR_EMAIL --to ADDR``: a proof in staff inboxes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, emit_json, pin_now
from personify.cli.commands.render import (
    JourneyOpt,
    VarOpt,
    VarsOpt,
    given_variables,
    journey_doc,
    journeys_for,
)


@app.command("send-test", rich_help_panel="Email")
def send_test_command(
    template: Annotated[str, typer.Argument(help="Template name (templates/NAME.liquid).")],
    customer: Annotated[
        str,
        typer.Option(
            "--customer", "-c", help="Whose email to show: customer id, email or kind:value."
        ),
    ],
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            help="A test recipient; repeat. Each must be listed in email.test_recipients "
            "(an address or *@domain): any other is refused (exit 2).",
        ),
    ],
    var: VarOpt = None,
    vars_file: VarsOpt = None,
    journey: JourneyOpt = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Send one customer's email to test inboxes (email.test_recipients), exactly as it would
    go out.

    Exactly as `personify render` renders it at --now, through the project's delivery
    (outbox, SMTP or ESP): the subject prefixed "[TEST] ", the header "X-Personify-Test: 1",
    To the test recipient alone. It is the template's variant for the customer's locale
    (templates/NAME.fr.liquid …), as they would get.

    Recipients must be listed in email.test_recipients (addresses or *@domain patterns), so a
    typo cannot mail a customer. Nothing is written to messages (no frequency cap, report or
    idempotency key is touched) and no discount code is issued (the code already issued for
    that message, else PREVIEW-CODE); tracked links and the pixel record nothing and the
    unsubscribe links unsubscribe nobody. Because it shows one customer's personal data to
    staff, an audit_log entry (test_send: actor, template, hashed customer and recipients) is
    written before the email leaves. Also says whether the customer's own email, sent at
    --now, would go out. Exit 1 when a recipient's copy could not be handed over."""
    from personify import clock
    from personify.delivery import DeliveryError
    from personify.journeys.preview import describe, verdict
    from personify.journeys.proof import check_recipients, send_test
    from personify.messages import read_customer
    from personify.session import open_session

    pin_now(now)
    variables = given_variables(var, vars_file)
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        check_recipients(proj, to)  # before reading anyone: a refused address changes nothing
        person = read_customer(wh, customer, proj)
        journeys = journeys_for(proj, journey, template)
        done = send_test(
            wh, proj, journeys, template, person, to, variables, now=clock.now(), actor="cli"
        )
    sent = [
        {
            "to": address,
            "ok": not isinstance(outcome, DeliveryError),
            "location": None if isinstance(outcome, DeliveryError) else outcome.location,
            "error": str(outcome) if isinstance(outcome, DeliveryError) else None,
        }
        for address, outcome in done.outcomes
    ]
    if json:
        emit_json(
            {
                "template": template,
                "customer_id": done.customer_id,
                "subject": done.subject,
                "transport": done.transport,
                "sent": sent,
                "journey": journey_doc(done.found),
                "send_now": done.gate.as_dict(),
            }
        )
    else:
        out = sys.stderr
        if done.found is not None:
            out.write(f"send-test: {describe(done.found)}\n")
            for note in done.found.notes:
                out.write(f"  note: {note}\n")
        out.write(f"send-test: for the customer, {verdict(done.gate)}\n")
        for item in sent:
            if item["ok"]:
                sys.stdout.write(
                    f"sent {done.subject!r} to {item['to']} via {done.transport}: "
                    f"{item['location']}\n"
                )
            else:
                out.write(f"send-test: not sent to {item['to']}: {item['error']}\n")
    if done.failed:
        raise typer.Exit(1)
