"""Unsubscribe routes: ``/unsubscribe/{token}`` — the link in every email's ``List-Unsubscribe``.

* ``GET`` shows a small page with a button and changes nothing (mail scanners and link
  previews follow links; RFC 8058 requires that a GET never unsubscribes).
* ``POST`` unsubscribes: the RFC 8058 one-click request mail clients send (body
  ``List-Unsubscribe=One-Click``) and the page's own form both land here. The token is verified
  (:func:`personify.delivery.tokens.verify`, HMAC with the project's ``signing_key``); a valid one
  suppresses the customer (:func:`personify.delivery.suppress.unsubscribe`: ``suppressions``
  rows, the purpose revoked in the consent history with the request's IP and user agent) so the
  next send is stopped; with ``email.unsubscribe_scope: purpose`` only the token's purpose is
  revoked and nothing is suppressed (the person's other purposes keep sending). Doing it again
  changes nothing and answers the same page. A forged, altered or malformed token answers 400
  and changes nothing. A token that names its message (every link sent since tokens carry
  ``m``) also records an ``Email Unsubscribed`` event for that message
  (:func:`personify.engagement.record.record_feedback`: ``source`` ``email_tracking``, tied to
  the message's journey, step and variant, once per message however often it is posted), which
  ``personify report journeys`` counts; an older token unsubscribes all the same. A test
  send's token (``personify send-test``: the email went to staff) answers a page saying so and
  changes nothing.

No authentication: the signed token is the credential. Answers are HTML pages that never show
the customer's address or id; the access log names the route template, never the token.
"""

from __future__ import annotations

import html

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.delivery import preferences_base
from personify.delivery.suppress import Unsubscribed, unsubscribe
from personify.delivery.tokens import UnsubscribeClaim, is_test, project_key, verify
from personify.engagement.record import record_feedback
from personify.errors import ConfigError
from personify.server.metrics import Counter
from personify.server.openapi import Content, Operation, operation
from personify.server.responses import read_body
from personify.server.state import ServerState, state_of

BODY_LIMIT = 4096
_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 4em auto">{body}</body></html>"""
_HTML = Content("An HTML page.", {"type": "string"}, "text/html")


def _counter(state: ServerState) -> Counter:
    return state.counter(
        "personify_unsubscribes_total",
        "Unsubscribe POSTs by outcome (new, repeat, invalid, test).",
        ("outcome",),
    )


def _page(title: str, body: str, status: int = 200) -> Response:
    return Response(
        _PAGE.format(title=html.escape(title), body=body),
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=_HEADERS,
    )


def _invalid() -> Response:
    return _page(
        "Invalid link",
        "<h1>This unsubscribe link is not valid</h1>"
        "<p>It may have been cut or changed. Use the link from the email itself.</p>",
        400,
    )


_TEST = object()
"""A test send's token (``personify send-test``): unsubscribes nobody."""


def _claim(state: ServerState, token: str) -> UnsubscribeClaim | None | ConfigError | object:
    try:
        key = project_key(state.session.project)
    except ConfigError as e:
        return e
    claim = verify(key, token)
    if claim is None and is_test(key, token):
        return _TEST
    return claim


def _test_page() -> Response:
    return _page(
        "Test email",
        "<h1>This is a test email</h1><p>Its unsubscribe link unsubscribes nobody: in the "
        "email a customer gets, this link unsubscribes them.</p>",
    )


def _unavailable() -> Response:
    return _page(
        "Unsubscribe unavailable",
        "<h1>Unsubscribing is not available right now</h1><p>Please try again later.</p>",
        503,
    )


@operation(
    Operation(
        summary="The unsubscribe page (changes nothing)",
        description="A page with a button that POSTs to the same URL. Safe for link scanners.",
        tags=("unsubscribe",),
        responses={200: _HTML, 400: Content("Invalid token.", {"type": "string"}, "text/html")},
    )
)
async def unsubscribe_page(request: Request) -> Response:
    """``GET /unsubscribe/{token}``."""
    claim = _claim(state_of(request), str(request.path_params["token"]))
    if isinstance(claim, ConfigError):
        return _unavailable()
    if claim is None:
        return _invalid()
    if claim is _TEST:
        return _test_page()
    return _page(
        "Unsubscribe",
        "<h1>Unsubscribe</h1><p>Stop receiving these emails?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
        + _choose(state_of(request), str(request.path_params["token"])),
    )


def _choose(state: ServerState, token: str) -> str:
    """A link to the preference page of the same token, when the project offers topics."""
    project = state.session.project
    if not project.config.email.topics:
        return ""
    url = html.escape(preferences_base(project) + token)
    return f'<p><a href="{url}">Choose which emails you get instead</a></p>'


def proof_of(request: Request) -> dict[str, str]:
    """The request's proof for the consent history: the sender's IP and user agent."""
    proof: dict[str, str] = {}
    if request.client:
        proof["ip"] = request.client.host
    if agent := request.headers.get("user-agent"):
        proof["user_agent"] = agent
    return proof


def _apply(
    state: ServerState, claim: UnsubscribeClaim, form: str, proof: dict[str, str]
) -> Unsubscribed:
    session = state.session
    done = unsubscribe(session.warehouse, session.project, claim, form=form, proof=proof)
    if claim.message_key is not None:  # after the suppression: that is what must not be lost
        record_feedback(
            session.warehouse, session.project, claim.message_key, claim.customer_id, "unsubscribed"
        )
    return done


@operation(
    Operation(
        summary="Unsubscribe (RFC 8058 one-click)",
        description="Body `List-Unsubscribe=One-Click` (form-encoded), as mail clients send it, or "
        "the unsubscribe page's form. Suppresses the customer named by the signed token; "
        "idempotent. No authentication: the token is the credential.",
        tags=("unsubscribe",),
        request=Content(
            "`List-Unsubscribe=One-Click`.",
            {"type": "string"},
            "application/x-www-form-urlencoded",
        ),
        responses={200: _HTML, 400: Content("Invalid token.", {"type": "string"}, "text/html")},
    )
)
async def unsubscribe_post(request: Request) -> Response:
    """``POST /unsubscribe/{token}``."""
    state = state_of(request)
    body = await read_body(request, BODY_LIMIT)  # read (and bounded) whatever was sent
    claim = _claim(state, str(request.path_params["token"]))
    if isinstance(claim, ConfigError):
        return _unavailable()
    if claim is None:
        _counter(state).inc(outcome="invalid")
        return _invalid()
    if not isinstance(claim, UnsubscribeClaim):  # a test send's link: changes nothing
        _counter(state).inc(outcome="test")
        return _test_page()
    one_click = b"One-Click" in body  # urlencoded or multipart/form-data (RFC 8058 allows both)
    form = "list-unsubscribe one-click" if one_click else "unsubscribe page"
    done = await run_in_threadpool(_apply, state, claim, form, proof_of(request))
    _counter(state).inc(outcome="new" if done.new else "repeat")
    return _page(
        "Unsubscribed",
        "<h1>You are unsubscribed</h1><p>You will not receive these emails any more.</p>",
    )


def routes() -> list[BaseRoute]:
    """The unsubscribe routes."""
    return [
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
    ]
