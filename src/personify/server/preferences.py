"""The preference page: ``/preferences/{token}`` — opt down, not out.

The token is an unsubscribe token (:mod:`personify.delivery.tokens`, the same one an email's
``List-Unsubscribe`` link carries; templates get the page as ``{{ preferences_url }}``).

* ``GET`` lists the project's topics (``email.topics``: consent purposes with a label) as
  checkboxes, each checked when the person may be mailed for it now (the send gate,
  :func:`personify.privacy.consent.consented`), and an "unsubscribe from everything" button. It
  changes nothing: mail scanners and link previews follow links.
* ``POST`` (the page's form, ``topic=…`` for each checked box) records each change through the
  consent history with proof (``form: preference_centre``, the request's IP and user agent):
  a newly checked topic is granted (:func:`~personify.privacy.consent.set_consent`), a newly
  unchecked one revoked (:func:`~personify.delivery.suppress.revoke_purpose`); an unchanged
  topic writes nothing. ``action=all`` unsubscribes from everything: the suppression of the
  one-click unsubscribe in scope ``all`` (:func:`~personify.delivery.suppress.unsubscribe`),
  whatever ``email.unsubscribe_scope`` says. ``action=pause30`` / ``pause90`` pauses every topic
  (and the link's own purpose) for 30 or 90 days (:func:`~personify.privacy.consent.pause`:
  ``consent_pauses`` rows the send gate and the ``sendable`` view read; consent untouched, so
  mail resumes by itself), ``action=resume`` ends the pause now.

A suppressed person (unsubscribed from everything, bounced, complained, erased) sees the page
with the boxes disabled and a note; a POST changes nothing for them — the page cannot lift a
suppression (that takes a new sign-up). A test send's token answers the test page. No
authentication: the signed token is the credential; pages never show the customer's address or
id, and the access log names the route template, never the token.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify import clock
from personify.delivery.suppress import current_ids, revoke_purpose, unsubscribe
from personify.delivery.tokens import UnsubscribeClaim
from personify.engagement.record import record_feedback
from personify.errors import ConfigError
from personify.journeys.decide import suppressed
from personify.privacy.audit import log_action
from personify.privacy.consent import (
    consented,
    is_marketing,
    pause,
    paused_until,
    resume,
    set_consent,
)
from personify.privacy.crypto import project_ring
from personify.privacy.erase import erased_customers, invalidate_cached
from personify.privacy.hashing import project_key
from personify.server.metrics import Counter
from personify.server.openapi import Content, Operation, operation
from personify.server.responses import read_body
from personify.server.state import ServerState, state_of
from personify.server.unsubscribe import (
    BODY_LIMIT,
    _claim,
    _invalid,
    _page,
    _test_page,
    _unavailable,
    proof_of,
)

PAUSE_DAYS = (30, 90)
"""The pauses the page offers, in days."""
FORM = "preference_centre"
"""The ``form`` of every consent change the page records."""
SOURCE = "preference_centre"
_HTML = Content("An HTML page.", {"type": "string"}, "text/html")
_BAD = Content("Invalid token.", {"type": "string"}, "text/html")


def _counter(state: ServerState) -> Counter:
    return state.counter(
        "personify_preference_posts_total",
        "Preference page POSTs by outcome (saved, unchanged, paused, resumed, everything, "
        "suppressed, invalid, test).",
        ("outcome",),
    )


@dataclass(frozen=True)
class Standing:
    """What the page shows one person."""

    customer_id: str
    chosen: frozenset[str]
    """The topics they may be mailed for now."""
    suppressed: bool
    """Suppressed for everything: the boxes cannot change that."""
    paused_until: datetime | None = None
    """When a pause they asked for ends (``None``: not paused)."""


def _standing(state: ServerState, claim: UnsubscribeClaim) -> Standing:
    session = state.session
    wh, project = session.warehouse, session.project
    key = project_key(project)
    cid = current_ids(wh, [claim.customer_id])[claim.customer_id]
    if (
        # the token's id or the one it merged into: no row left to say so, a write would
        # bring their id back
        erased_customers(wh, key, {claim.customer_id, cid}) or suppressed(wh, [cid], key)
    ):
        return Standing(cid, frozenset(), True)
    kinds = dict(project.config.identity.source_kinds)
    chosen = {
        purpose
        for purpose in project.config.email.topics
        if consented(wh, [cid], purpose=purpose, source_kinds=kinds, paused=False)
    }
    return Standing(cid, frozenset(chosen), False, paused_until(wh, cid))


def _form(state: ServerState, standing: Standing, notice: str = "") -> Response:
    topics = state.session.project.config.email.topics
    disabled = " disabled" if standing.suppressed else ""
    boxes = "".join(
        f'<p><label><input type="checkbox" name="topic" value="{html.escape(purpose)}"'
        f"{' checked' if purpose in standing.chosen else ''}{disabled}> "
        f"{html.escape(topic.label)}</label>"
        + (f"<br><small>{html.escape(topic.description)}</small>" if topic.description else "")
        + "</p>"
        for purpose, topic in topics.items()
    )
    if standing.suppressed:
        lead = (
            "<p><strong>You are unsubscribed from all our emails.</strong> To receive some "
            "again, please sign up again.</p>"
        )
        buttons = ""
    else:
        lead = "<p>Choose the emails you want to receive.</p>" if topics else ""
        save = (
            '<p><button type="submit" name="action" value="save">Save preferences</button></p>'
            if topics
            else ""
        )
        if standing.paused_until is not None:
            end = standing.paused_until.astimezone(UTC)
            day = f"{end.day} {end:%B %Y}"
            lead += f"<p>Our emails are paused until {html.escape(day)}.</p>"
            pauses = '<p><button type="submit" name="action" value="resume">Resume now</button></p>'
        else:
            pauses = "".join(
                f'<p><button type="submit" name="action" value="pause{days}">Pause all emails '
                f"for {days} days</button></p>"
                for days in PAUSE_DAYS
            )
        buttons = (
            save + pauses + '<p><button type="submit" name="action" value="all">Unsubscribe from '
            "everything</button></p>"
        )
    note = f'<p role="status"><strong>{html.escape(notice)}</strong></p>' if notice else ""
    return _page(
        "Email preferences",
        f'<h1>Email preferences</h1>{note}{lead}<form method="post">{boxes}{buttons}</form>',
    )


@operation(
    Operation(
        summary="The preference page (changes nothing)",
        description="The project's topics (`email.topics`) as checkboxes with the person's "
        "current state, and an 'unsubscribe from everything' button; the form POSTs to the same "
        "URL. Safe for link scanners.",
        tags=("unsubscribe",),
        responses={200: _HTML, 400: _BAD},
    )
)
async def preferences_page(request: Request) -> Response:
    """``GET /preferences/{token}``."""
    state = state_of(request)
    claim = _claim(state, str(request.path_params["token"]))
    if isinstance(claim, ConfigError):
        return _unavailable()
    if claim is None:
        return _invalid()
    if not isinstance(claim, UnsubscribeClaim):
        return _test_page()
    standing = await run_in_threadpool(_standing, state, claim)
    return _form(state, standing)


def _save(
    state: ServerState, claim: UnsubscribeClaim, wanted: set[str], proof: dict[str, str]
) -> tuple[str, Standing]:
    """Record the changes between the person's standing and ``wanted``; the outcome and the
    standing after."""
    session = state.session
    wh, project = session.warehouse, session.project
    before = _standing(state, claim)
    if before.suppressed:
        return "suppressed", before
    evidence = {**proof, "form": FORM}
    changed = 0
    for purpose in project.config.email.topics:
        if purpose in wanted and purpose not in before.chosen:
            set_consent(
                wh,
                before.customer_id,
                purpose=purpose,
                status="granted",
                source=SOURCE,
                proof=evidence,
                source_kinds=project.config.identity.source_kinds,
                cipher=project_ring(project),
            )
            log_action(
                wh,
                action="consent",
                actor=SOURCE,
                customer_id=before.customer_id,
                key=project_key(project),
                detail={"purpose": purpose, "channel": "email", "status": "granted"},
            )
            changed += 1
        elif purpose not in wanted and purpose in before.chosen:
            changed += revoke_purpose(
                wh, project, before.customer_id, purpose, source=SOURCE, proof=evidence
            )
    if changed:
        invalidate_cached(wh, project, [before.customer_id])
    return ("saved" if changed else "unchanged"), _standing(state, claim)


def _pause(state: ServerState, claim: UnsubscribeClaim, days: int | None) -> tuple[str, Standing]:
    """Pause every topic (and the link's own purpose) for ``days``, or end the pause (``None``)."""
    session = state.session
    wh, project = session.warehouse, session.project
    before = _standing(state, claim)
    if before.suppressed:
        return "suppressed", before
    purposes = sorted(p for p in {*project.config.email.topics, claim.purpose} if is_marketing(p))
    now = clock.now()
    with wh.transaction():
        if days is None:
            resume(wh, before.customer_id)
        else:
            until = now + timedelta(days=days)
            pause(wh, before.customer_id, purposes, until=until, source=SOURCE, at=now)
        log_action(
            wh,
            action="consent",
            actor=SOURCE,
            customer_id=before.customer_id,
            key=project_key(project),
            detail={
                "purposes": purposes,
                "status": "resumed" if days is None else "paused",
                "days": days,
            },
        )
    invalidate_cached(wh, project, [before.customer_id])
    return ("resumed" if days is None else "paused"), _standing(state, claim)


def _everything(
    state: ServerState, claim: UnsubscribeClaim, proof: dict[str, str]
) -> tuple[str, Standing]:
    session = state.session
    wh, project = session.warehouse, session.project
    unsubscribe(wh, project, claim, form=FORM, proof=proof, scope="all")
    if claim.message_key is not None:
        record_feedback(wh, project, claim.message_key, claim.customer_id, "unsubscribed")
    invalidate_cached(wh, project, [current_ids(wh, [claim.customer_id])[claim.customer_id]])
    return "everything", _standing(state, claim)


_NOTICES = {
    "saved": "Your preferences are saved.",
    "unchanged": "Your preferences are saved.",
    "everything": "You are unsubscribed from all our emails.",
    "suppressed": "Nothing was changed.",
    "paused": "Our emails are paused.",
    "resumed": "Our emails are no longer paused.",
}


@operation(
    Operation(
        summary="Save email preferences",
        description="The preference page's form (form-encoded): `topic` once per checked topic "
        "and `action=save`, or `action=all` to unsubscribe from everything. Each change is "
        "recorded in the consent history with proof (`form: preference_centre`, IP, user "
        "agent). No authentication: the token is the credential.",
        tags=("unsubscribe",),
        request=Content(
            "`topic=…&action=save` or `action=all`.",
            {"type": "string"},
            "application/x-www-form-urlencoded",
        ),
        responses={200: _HTML, 400: _BAD},
    )
)
async def preferences_post(request: Request) -> Response:
    """``POST /preferences/{token}``."""
    state = state_of(request)
    body = await read_body(request, BODY_LIMIT)
    claim = _claim(state, str(request.path_params["token"]))
    if isinstance(claim, ConfigError):
        return _unavailable()
    if claim is None:
        _counter(state).inc(outcome="invalid")
        return _invalid()
    if not isinstance(claim, UnsubscribeClaim):
        _counter(state).inc(outcome="test")
        return _test_page()
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    proof = proof_of(request)
    action = (fields.get("action") or ["save"])[0]
    if action == "all":
        outcome, standing = await run_in_threadpool(_everything, state, claim, proof)
    elif action == "resume" or action.removeprefix("pause") in {str(d) for d in PAUSE_DAYS}:
        days = None if action == "resume" else int(action.removeprefix("pause"))
        outcome, standing = await run_in_threadpool(_pause, state, claim, days)
    else:
        wanted = set(fields.get("topic", []))
        outcome, standing = await run_in_threadpool(_save, state, claim, wanted, proof)
    _counter(state).inc(outcome=outcome)
    return _form(state, standing, _NOTICES[outcome])


def routes() -> list[BaseRoute]:
    """The preference page's routes."""
    return [
        Route("/preferences/{token}", preferences_page, methods=["GET"]),
        Route("/preferences/{token}", preferences_post, methods=["POST"]),
    ]
