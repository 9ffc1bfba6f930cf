"""``POST /v1/test-sends``: ``personify send-test`` over HTTP — a customer's email, as ``personify
render`` shows it, sent to test inboxes (:mod:`personify.journeys.proof`).

Needs an admin token with the ``admin`` scope (it shows one customer's personal data to whoever
receives it). Recipients must be listed in ``email.test_recipients``: any other answers 400
``recipient_not_allowed`` and nothing is sent. The audit entry's actor is ``api:<token name>``.
Neither the customer's identifier nor the recipients are logged (the access log names the route
template only), and error answers do not quote the customer.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify import clock
from personify.delivery import DeliveryError
from personify.errors import NotFound, UsageError
from personify.journeys import project_journeys
from personify.journeys.preview import NotInJourney, senders
from personify.journeys.proof import RecipientRefused, TestSend, check_recipients, send_test
from personify.messages import read_customer
from personify.messages.errors import RenderError
from personify.server.openapi import ERROR, Content, Operation, operation
from personify.server.profiles import check_admin
from personify.server.responses import ApiError, JSONResponse, read_json
from personify.server.state import ServerState, state_of

BODY_LIMIT = 64 * 1024


class TestSendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to send to whom."""

    __test__ = False  # not a pytest class

    template: str
    """Template name (``templates/NAME.liquid``)."""
    customer: str
    """Whose email: customer id, email or ``kind:value``."""
    to: list[str]
    """Test recipients, each listed in ``email.test_recipients``."""
    journey: str | None = None
    """The journey whose send step makes the email (default: the one entered last)."""
    variables: dict[str, Any] = {}
    """Template variables, winning over the journey's."""
    now: str | None = None
    """Render as at this ISO 8601 instant (default: now)."""


class Sent(msgspec.Struct, frozen=True):
    to: str
    ok: bool
    location: str | None
    error: str | None


class TestSendAnswer(msgspec.Struct, frozen=True):
    """What was sent."""

    __test__ = False

    template: str
    customer_id: str
    subject: str
    """``[TEST] …``."""
    transport: str
    sent: list[Sent]
    journey: dict[str, Any] | None
    """The journey step the email came from (``null``: no journey sends the template)."""
    send_now: dict[str, Any]
    """Whether the customer's own email, sent now, would go out (``outcome``, ``reason``)."""


def _answer(done: TestSend) -> TestSendAnswer:
    found = done.found
    journey = None
    if found is not None:
        journey = {
            "name": found.journey,
            "step": found.step,
            "trigger_key": found.trigger_key,
            "message_status": found.status,
            "variant": found.variant,
            "discount_placeholder": found.placeholder,
        }
    return TestSendAnswer(
        template=done.template,
        customer_id=done.customer_id,
        subject=done.subject,
        transport=done.transport,
        sent=[
            Sent(to, False, None, str(o))
            if isinstance(o, DeliveryError)
            # the location of an outbox file is a server path: not for the caller
            else Sent(to, True, None if done.transport == "outbox" else o.location, None)
            for to, o in done.outcomes
        ],
        journey=journey,
        send_now=done.gate.as_dict(),
    )


def _send(state: ServerState, req: TestSendRequest, actor: str) -> TestSendAnswer:
    session = state.session
    wh, project = session.warehouse, session.project
    check_recipients(project, req.to)  # before reading anyone
    journeys = project_journeys(project)
    if req.journey is not None:
        journeys = [j for j in journeys if j.name == req.journey]
        if not senders(journeys, req.template):
            raise UsageError(f"no journey {req.journey!r} sends {req.template}")
    try:
        at = clock.parse_instant(req.now) if req.now else clock.now()
    except ValueError:
        raise UsageError(f"now: {req.now!r} is not an ISO 8601 instant") from None
    try:
        person = read_customer(wh, req.customer, project)
    except NotFound:  # its message would quote the identifier
        raise ApiError(404, "no customer has this identifier") from None
    try:
        done = send_test(
            wh, project, journeys, req.template, person, req.to, req.variables, now=at, actor=actor
        )
    except NotInJourney as e:
        raise ApiError(
            409,
            "the customer has no entry into the journey sending this template: give its "
            "variables, or choose a customer who has one"
            + (f" ({', '.join(e.customers)})" if e.customers else ""),
            code="not_in_journey",
        ) from None
    return _answer(done)


@operation(
    Operation(
        summary="Send a test email to internal inboxes",
        description="Renders TEMPLATE for the customer exactly as `personify render` does and "
        "sends it through the configured delivery to test recipients listed in "
        "`email.test_recipients` (subject `[TEST] …`, header `X-Personify-Test: 1`). Nothing is "
        "written to `messages`, no discount code is issued; an `audit_log` entry (`test_send`) "
        "is written. Needs the `admin` scope.",
        tags=("templates",),
        request=Content("The template, the customer and the recipients.", TestSendRequest),
        responses={
            200: Content("Where each copy went.", TestSendAnswer),
            400: Content("A recipient not in email.test_recipients, or a bad body.", ERROR),
            401: Content("Missing or wrong admin token.", ERROR),
            403: Content("The token lacks the admin scope.", ERROR),
            404: Content("No such customer or template.", ERROR),
            409: Content("The customer has no entry into the journey (no cart).", ERROR),
            422: Content("The template does not render.", ERROR),
            502: Content("A copy could not be handed over (`sent[].error`).", TestSendAnswer),
        },
        security=("adminToken",),
    )
)
async def post_test_send(request: Request) -> Response:
    """``POST /v1/test-sends``."""
    state = state_of(request)
    grant = check_admin(request, state, scope="admin")
    req = await read_json(request, TestSendRequest, limit=BODY_LIMIT)
    try:
        answer = await run_in_threadpool(_send, state, req, f"api:{grant.name}")
    except RecipientRefused as e:
        raise ApiError(400, e.message, code="recipient_not_allowed") from None
    except UsageError as e:
        raise ApiError(400, e.message, code="invalid_request") from None
    except RenderError as e:
        raise ApiError(422, str(e), code="render_failed") from None
    except NotFound as e:  # a template that does not exist (the customer is answered above)
        raise ApiError(404, e.message) from None
    status = 200 if all(s.ok for s in answer.sent) else 502
    return JSONResponse(answer, status_code=status)


def routes() -> list[BaseRoute]:
    """The test-send route."""
    return [Route("/v1/test-sends", post_test_send, methods=["POST"])]
