"""``personify consent set|show``: record and read a person's consent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from personify import clock
from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now

consent_app = typer.Typer(
    help="Consent per purpose and channel: record a change (history and proof kept), read it.",
    no_args_is_help=True,
)
app.add_typer(consent_app, name="consent", rich_help_panel="People")

WhoArg = Annotated[str, typer.Argument(help="Customer id, email, or kind:value identifier.")]


def _known_status(value: str) -> str:
    from personify.privacy.consent import STATUSES

    if value not in STATUSES:
        raise typer.BadParameter(
            f"unknown consent status {value!r}; use one of: {', '.join(STATUSES)}",
            param_hint="--status",
        )
    return value


@consent_app.command("set")
def set_command(
    who: WhoArg,
    purpose: Annotated[
        str, typer.Option("--purpose", help="e.g. email_marketing, transactional, profiling.")
    ],
    status: Annotated[
        str, typer.Option("--status", help="granted or revoked.", callback=_known_status)
    ],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, …")] = "email",
    source: Annotated[str, typer.Option("--source", help="Where the change came from.")] = "cli",
    form: Annotated[
        str | None, typer.Option("--form", help="Proof: the form or document that collected it.")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Record a consent change for a person (grant or revoke), with its proof.

    Record a consent change for a person, now (or at --now). A grant also supersedes older
    revocations recorded under the person's other ids; a revocation wins everywhere."""
    from personify.privacy.audit import log_action
    from personify.privacy.consent import set_consent
    from personify.privacy.crypto import project_ring
    from personify.privacy.erase import invalidate_cached
    from personify.privacy.hashing import optional_key
    from personify.privacy.subjects import resolve
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        customer_id = resolve(wh, proj, who)
        result = set_consent(
            wh,
            customer_id,
            purpose=purpose,
            status=status,
            channel=channel,
            source=source,
            at=clock.now(),
            proof={"form": form} if form else None,
            source_kinds=proj.config.identity.source_kinds,
            cipher=project_ring(proj),
        )
        invalidate_cached(wh, proj, [customer_id])
        log_action(
            wh,
            action="consent",
            actor="cli",
            customer_id=customer_id,
            key=optional_key(proj),
            detail={"purpose": purpose, "channel": channel, "status": status, "source": source},
        )
    if json:
        emit_json(result)
        return
    verdict = "may" if result["allowed"] else "may not"
    state = "changed" if result["changed"] else "unchanged: a newer change is recorded"
    if result["superseded"]:
        state += f", superseded {result['superseded']} older revocation(s)"
    console().print(
        f"{purpose} on {channel}: {status} for customer {customer_id} ({state}). "
        f"They {verdict} be contacted for it now."
    )


@consent_app.command("request")
def request_command(
    who: WhoArg,
    purpose: Annotated[str, typer.Option("--purpose", help="e.g. email_marketing.")],
    channel: Annotated[str, typer.Option("--channel", help="email, sms, …")] = "email",
    source: Annotated[str, typer.Option("--source", help="Where the sign-up came from.")] = "cli",
    send: Annotated[
        bool,
        typer.Option(
            "--send/--no-send",
            help="Email the link (template confirm_subscription, the project's delivery; once "
            "per person, purpose and day), or only print it.",
        ),
    ] = True,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Double opt-in: record a pending request and email the confirmation link.

    Double opt-in: record a pending request and email the person the signed confirmation
    link (a transactional email through the project's delivery). The consent is granted only
    when they confirm (POST on the link, served by `personify serve`); until then they may not be
    contacted for the purpose."""
    from personify.privacy.audit import log_action
    from personify.privacy.doi import request_confirmation, send_confirmation
    from personify.privacy.hashing import optional_key
    from personify.privacy.subjects import resolve
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        customer_id = resolve(wh, proj, who)
        url = request_confirmation(
            wh, proj, customer_id, purpose=purpose, channel=channel, source=source
        )
        email = (
            send_confirmation(wh, proj, customer_id, url, purpose=purpose, channel=channel)
            if send
            else None
        )
        log_action(
            wh,
            action="consent",
            actor="cli",
            customer_id=customer_id,
            key=optional_key(proj),
            detail={"purpose": purpose, "channel": channel, "status": "pending"},
        )
    if json:
        emit_json(
            {"customer_id": customer_id, "pending": True, "confirmation_url": url, "email": email}
        )
        return
    if email is None:
        console().print(f"Pending until confirmed. Email customer {customer_id} this link:\n{url}")
    elif email["status"] == "failed":
        console().print(
            f"Pending until confirmed. The confirmation email was not sent ({email['error']}); "
            f"the link:\n{url}"
        )
        raise typer.Exit(1)
    else:
        done = "sent" if email["status"] == "sent" else "already sent today"
        console().print(
            f"Pending until confirmed. Confirmation email to customer {customer_id}: {done}."
        )


@consent_app.command("show")
def show_command(who: WhoArg, project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """A person's consent rows (under every id they hold) and their history with proof."""
    from personify.privacy.subjects import consent_rows, resolve
    from personify.session import open_session
    from personify.warehouse.base import UNNEST

    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        customer_id = resolve(wh, proj, who)
        rows = consent_rows(wh, customer_id, proj.config.identity.source_kinds)
        keys = sorted({r.key for r in rows} | {customer_id})
        history = wh.fetch_arrow(
            "SELECT customer_id AS key, purpose, channel, status, source, changed_at, ip, "
            "user_agent, form, confirmed_at FROM consent_history "
            f"WHERE customer_id IN (SELECT {UNNEST}) "
            "ORDER BY changed_at, purpose, channel",
            [keys],
        ).to_pylist()
    current = [vars(r) for r in rows]
    if json:
        emit_json({"customer_id": customer_id, "current": current, "history": history})
        return
    out = console()
    table = Table("purpose", "channel", "status", "source", "updated at", "key", title="Consent")
    for r in rows:
        table.add_row(r.purpose, r.channel, r.status, r.source, str(r.updated_at), r.key)
    out.print(table)
    hist = Table("changed at", "purpose", "channel", "status", "source", "form", title="History")
    for h in history:
        hist.add_row(
            str(h["changed_at"]),
            h["purpose"],
            h["channel"],
            h["status"],
            h["source"],
            str(h["form"] or ""),
        )
    out.print(hist)
