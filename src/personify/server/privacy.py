"""Privacy routes, for admins (the project's admin token as ``Authorization: Bearer …``):

* ``GET /v1/privacy/export?subject=…`` — everything held about a person, one JSON document
  (:func:`personify.privacy.export.export_subject`);
* ``POST /v1/privacy/erase`` ``{"subject": …}`` — erase them everywhere; the per-step report
  (:func:`personify.privacy.erase.erase_subject`), with the removals now pending per destination
  and the destinations that cannot remove their record. Idempotent: again answers
  ``already_erased``;
* ``POST /v1/privacy/consent`` ``{"subject", "purpose", "status", "channel"?, "source"?,
  "proof"?}`` — record a consent change with its proof (a CRM, a preference centre, a form
  handler); the answer says whether the person may now be contacted for the purpose;
* ``GET``/``POST /v1/privacy/confirm/{token}`` — double opt-in confirmation links (no token
  needed: the signed link is the credential; ``GET`` shows a button, ``POST`` confirms).

Every action lands in the audit log (actor ``api:<token name>``; ``admin_token`` is ``admin``).
Tokens need the ``privacy`` scope (:mod:`personify.privacy.access`); the export also answers a
``privacy:masked`` token, with personal data masked and the person named by customer id only
(an email answers 404 whether or not someone has it:
:attr:`~personify.privacy.access.Grant.finds_by_identifier`). Subjects are never logged; a
subject that names nobody answers 404 without quoting it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.errors import NotFound
from personify.privacy.audit import log_action
from personify.privacy.consent import set_consent
from personify.privacy.crypto import project_ring
from personify.privacy.doi import confirm, request_confirmation, send_confirmation
from personify.privacy.erase import erase_subject, invalidate_cached
from personify.privacy.export import export_subject
from personify.privacy.hashing import optional_key
from personify.privacy.masking import mask_document
from personify.privacy.subjects import resolve
from personify.profiles.read import customer_by_id
from personify.server.openapi import ERROR, Content, Operation, operation
from personify.server.profiles import check_admin
from personify.server.responses import ApiError, JSONResponse
from personify.server.state import ServerState, state_of

_NOBODY = "no customer has this identifier"
_BY_ID = (
    "no customer has this id (a token without the privacy or profiles:read scope names people "
    "by customer id only)"
)
"""A masked token's answer for any subject that is no customer id — an unknown id, or an email
whether or not someone has it: the same words, status and lookups."""


class EraseRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: str
    """Customer id, email or ``kind:value`` identifier."""


class ConsentRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: str
    """Customer id, email or ``kind:value`` identifier."""
    purpose: str
    """``email_marketing``, ``transactional``, ``profiling`` …"""
    status: Literal["granted", "revoked"]
    channel: str = "email"
    source: str = "api"
    """Where the change came from (a form, the CRM …)."""
    proof: dict[str, Any] | None = None
    """``ip``, ``user_agent``, ``form``, ``confirmed_at`` (double opt-in) and anything else."""
    double_opt_in: bool = False
    """A grant that waits for the person's confirmation: recorded ``pending``, the confirmation
    email sent (template ``confirm_subscription``; once per person, purpose and day); the answer
    holds the ``confirmation_url`` and what became of the email."""
    send_email: bool = True
    """With ``double_opt_in``: send the confirmation email (``false``: only return the link, for
    a site that sends its own)."""


class ErasureStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    step: str
    rows: int
    """Rows (and files) removed or rewritten by the step."""
    status: str
    """``done`` now, ``already_done`` by an earlier run."""


class ErasureDestination(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A destination that received the person's record."""

    destination: str
    records: int
    removals_pending: int
    """Records the next push removes at the destination's API."""
    cannot_remove: int
    """Records Personify cannot remove: the operator removes them in that tool."""
    push_running: bool
    """A push of it was running: what it records of the person comes after this answer (erase
    again once it ends to see it)."""
    message: str
    """What to do, in a sentence."""


class ErasureForwarded(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An events destination (``kind: events``) the person's events were forwarded to."""

    destination: str
    events: int
    """Recorded as posted to its API (sent, or rejected by it)."""
    earlier: int
    """Stored before its floor, their outcome pruned: up to this many more."""
    message: str
    """``N of the person's events were forwarded to X …: erase them there``."""


class ErasureAnswer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """:meth:`personify.privacy.erase.ErasureReport.as_dict` (every key: a test validates a real
    answer against this schema)."""

    erasure_id: str
    status: str
    """``erased``, or ``already_erased`` when nothing was left."""
    steps: list[ErasureStep]
    rows: int
    """Rows and files removed or rewritten, every step together."""
    destinations: list[ErasureDestination]
    removals_pending: dict[str, int]
    """This person's removals pending, per destination."""
    removals_pending_all: dict[str, int]
    """Every erasure's removals pending, per destination (``personify push`` sends them)."""
    events_forwarded: list[ErasureForwarded]


def _body(raw: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as e:
        raise ApiError(400, f"invalid request body: {e}") from None


def _export(
    state: ServerState, subject: str, actor: str, masked: bool, by_identifier: bool
) -> dict[str, Any]:
    wh, project = state.session.warehouse, state.session.project
    if not by_identifier:  # ids only: an email costs the same lookups whether someone has it
        found = customer_by_id(wh, subject)
        if found is None:
            raise NotFound("no customer has this id")
        subject = found
    doc = export_subject(wh, project, subject)
    log_action(
        wh,
        action="export",
        actor=actor,
        customer_id=doc["customer_id"],
        key=optional_key(project),
        detail={"rows": sum(doc["counts"].values()), "masked": masked},
    )
    if masked:
        doc = mask_document(doc)
        doc["masked"] = True
    return doc


def _erase(state: ServerState, subject: str, actor: str) -> dict[str, Any]:
    return erase_subject(
        state.session.warehouse, state.session.project, subject, actor=actor
    ).as_dict()


def _consent(state: ServerState, req: ConsentRequest, actor: str) -> dict[str, Any]:
    wh, project = state.session.warehouse, state.session.project
    customer_id = resolve(wh, project, req.subject)
    if req.double_opt_in and req.status == "granted":
        url = request_confirmation(
            wh,
            project,
            customer_id,
            purpose=req.purpose,
            channel=req.channel,
            source=req.source,
            proof=req.proof,
        )
        log_action(
            wh,
            action="consent",
            actor=actor,
            customer_id=customer_id,
            key=optional_key(project),
            detail={"purpose": req.purpose, "channel": req.channel, "status": "pending"},
        )
        email = (
            send_confirmation(
                wh, project, customer_id, url, purpose=req.purpose, channel=req.channel
            )
            if req.send_email
            else None
        )
        return {
            "customer_id": customer_id,
            "pending": True,
            "confirmation_url": url,
            "email": email,
        }
    result = set_consent(
        wh,
        customer_id,
        purpose=req.purpose,
        status=req.status,
        channel=req.channel,
        source=req.source,
        proof=req.proof,
        source_kinds=project.config.identity.source_kinds,
        cipher=project_ring(project),
    )
    invalidate_cached(wh, project, [customer_id])
    log_action(
        wh,
        action="consent",
        actor=actor,
        customer_id=customer_id,
        key=optional_key(project),
        detail={"purpose": req.purpose, "channel": req.channel, "status": req.status},
    )
    return result


async def _guarded(fn: Any, *args: Any, nobody: str = _NOBODY) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except NotFound:
        raise ApiError(404, nobody) from None


_AUTH_ERRORS = {401: Content("Missing or wrong admin token.", ERROR)}


@operation(
    Operation(
        summary="Everything held about a person (subject access)",
        description="Profile, identities, events (anonymous ones linked through the identity "
        "graph too), orders, tickets, consent and its history, messages, tags, memberships, "
        "discount codes, provenance, quarantined payloads that mention them, outbox entries. "
        "Query parameter `subject`: a customer id, email or `kind:value`. A token with the "
        "`privacy` (or `admin`) scope sees raw values; one with only `privacy:masked` gets "
        'personal data masked (`***@domain`, `+***78`, `A***`) and `"masked": true`, and names '
        "the person by customer id only: any other subject (an email too, whether or not "
        "someone has it) answers 404, so the answer does not tell whether an address belongs "
        "to a customer.",
        tags=("privacy",),
        responses={
            200: Content("The export document.", dict[str, Any]),
            400: Content("No subject.", ERROR),
            **_AUTH_ERRORS,
            404: Content("No customer has this identifier.", ERROR),
        },
        security=("adminToken",),
    )
)
async def export(request: Request) -> Response:
    """``GET /v1/privacy/export?subject=…``."""
    state = state_of(request)
    grant = check_admin(request, state, "privacy:masked")
    subject = request.query_params.get("subject", "").strip()
    if not subject:
        raise ApiError(400, "pass the person as ?subject=<customer id, email or kind:value>")
    masked, by_identifier = not grant.sees_pii, grant.finds_by_identifier
    doc = await _guarded(
        _export,
        state,
        subject,
        f"api:{grant.name}",
        masked,
        by_identifier,
        nobody=_NOBODY if by_identifier else _BY_ID,
    )
    return JSONResponse(doc)


@operation(
    Operation(
        summary="Erase a person everywhere",
        description="Every table and file, a keyed-hash tombstone left so re-ingested data does "
        "not make them marketable again. Idempotent and resumable.",
        tags=("privacy",),
        request=Content("Who.", EraseRequest),
        responses={
            200: Content("The per-step completion report.", ErasureAnswer),
            400: Content("Invalid body.", ERROR),
            **_AUTH_ERRORS,
            404: Content("No customer has this identifier.", ERROR),
        },
        security=("adminToken",),
    )
)
async def erase(request: Request) -> Response:
    """``POST /v1/privacy/erase``."""
    state = state_of(request)
    grant = check_admin(request, state, "privacy")
    req = _body(await request.body(), EraseRequest)
    if not req.subject.strip():
        raise ApiError(400, "subject is empty")
    return JSONResponse(await _guarded(_erase, state, req.subject.strip(), f"api:{grant.name}"))


@operation(
    Operation(
        summary="Record a consent change",
        description="Recorded on the customer with its proof; a grant supersedes older "
        "revocations under the person's other ids, a revocation wins everywhere.",
        tags=("privacy",),
        request=Content("The change.", ConsentRequest),
        responses={
            200: Content("What changed, and whether they may now be contacted.", dict[str, Any]),
            400: Content("Invalid body.", ERROR),
            **_AUTH_ERRORS,
            404: Content("No customer has this identifier.", ERROR),
        },
        security=("adminToken",),
    )
)
async def consent(request: Request) -> Response:
    """``POST /v1/privacy/consent``."""
    state = state_of(request)
    grant = check_admin(request, state, "privacy")
    req = _body(await request.body(), ConsentRequest)
    return JSONResponse(await _guarded(_consent, state, req, f"api:{grant.name}"))


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto">{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> Response:
    html = _PAGE.format(title=title, body=body)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8")


async def confirm_page(request: Request) -> Response:
    """``GET /v1/privacy/confirm/{token}``: a button; changes nothing (link scanners)."""
    return _page(
        "Confirm your subscription",
        '<h1>Confirm your subscription</h1><form method="post">'
        '<button type="submit">Yes, send me these emails</button></form>',
    )


def _confirm(state: ServerState, token: str, proof: dict[str, Any]) -> dict[str, Any] | None:
    wh, project = state.session.warehouse, state.session.project
    result = confirm(wh, project, token, proof=proof)
    if result is not None:
        invalidate_cached(wh, project, [result["customer_id"]])
        log_action(
            wh,
            action="consent",
            actor="double_opt_in",
            customer_id=result["customer_id"],
            key=optional_key(project),
            detail={"purpose": result["purpose"], "status": "granted", "confirmed": True},
        )
    return result


async def confirm_post(request: Request) -> Response:
    """``POST /v1/privacy/confirm/{token}``: the person confirms; consent granted with proof."""
    state = state_of(request)
    proof: dict[str, Any] = {"form": "double opt-in confirmation"}
    if request.client:
        proof["ip"] = request.client.host
    if agent := request.headers.get("user-agent"):
        proof["user_agent"] = agent
    token = str(request.path_params["token"])
    result = await run_in_threadpool(_confirm, state, token, proof)
    if result is None:
        return _page(
            "Link expired", "<p>This confirmation link is invalid or has expired.</p>", 400
        )
    return _page("Subscription confirmed", "<p>Thank you: your subscription is confirmed.</p>")


def routes() -> list[BaseRoute]:
    """The privacy routes."""
    return [
        Route("/v1/privacy/export", export, methods=["GET"]),
        Route("/v1/privacy/erase", erase, methods=["POST"]),
        Route("/v1/privacy/consent", consent, methods=["POST"]),
        Route("/v1/privacy/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/v1/privacy/confirm/{token}", confirm_post, methods=["POST"]),
    ]
