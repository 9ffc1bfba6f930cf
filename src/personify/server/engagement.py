"""Tracking routes: ``GET /o/{token}.gif`` (the open pixel) and ``GET /c/{token}`` (a click).

Both verify the signed token (:func:`personify.engagement.verify`, HMAC with the project's
``signing_key``); a forged, altered or malformed token answers 404 and records nothing. A valid
one answers at once — the pixel (a 43-byte transparent GIF) or a 302 to the URL *inside the
token* (never a URL from the query string: no open redirect) — and the event is recorded right
after the answer (:func:`personify.engagement.record`), so a slow warehouse never delays a
reader. ``HEAD`` is answered the same way and flagged as a scanner's. No authentication: the
token is the credential; the access log names the route template, never the token.
"""

from __future__ import annotations

import base64
import logging

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify import clock
from personify.delivery.tokens import project_key
from personify.engagement import Hit, TrackingClaim, record, verify
from personify.engagement.tokens import Kind
from personify.errors import ConfigError, PersonifyError
from personify.server.metrics import Counter
from personify.server.openapi import Content, Operation, operation
from personify.server.state import ServerState, state_of
from personify.server.tracking_http import client_ip

log = logging.getLogger(__name__)
KEY = "engagement.counter"
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"cache-control": "no-store, no-cache, must-revalidate, private", "pragma": "no-cache"}


def _counter(state: ServerState) -> Counter:
    found = state.extras.get(KEY)
    if found is None:
        found = state.extras[KEY] = state.registry.counter(
            "personify_engagement_hits_total",
            "Open and click tracking hits by kind and outcome (person, machine, unknown, "
            "repeat, invalid, failed).",
            ("kind", "outcome"),
        )
    assert isinstance(found, Counter)
    return found


def _claim(state: ServerState, kind: Kind, token: str) -> TrackingClaim | None:
    try:
        key = project_key(state.session.project)
    except ConfigError:
        return None
    return verify(key, kind, token)


def _record(state: ServerState, hit: Hit) -> None:
    counter = _counter(state)
    session = state.session
    try:
        done = record(session.warehouse, session.project, hit)
    except PersonifyError as e:
        log.warning("tracking hit not recorded: %s", type(e).__name__)
        counter.inc(kind=hit.claim.kind, outcome="failed")
        return
    if done.message_id is None:
        outcome = "unknown"
    elif not done.new:
        outcome = "repeat"
    else:
        outcome = "machine" if done.machine else "person"
    counter.inc(kind=hit.claim.kind, outcome=outcome)


def _hit(request: Request, claim: TrackingClaim) -> Hit:
    return Hit(
        claim,
        clock.now(),
        request.headers.get("user-agent", "")[:512],
        client_ip(request),
        request.method,
    )


def _not_found(state: ServerState, kind: Kind) -> Response:
    _counter(state).inc(kind=kind, outcome="invalid")
    return Response("not found", status_code=404, media_type="text/plain", headers=_NO_STORE)


_TOKEN = Content("Not a valid tracking token.", {"type": "string"}, "text/plain")


@operation(
    Operation(
        summary="The open pixel",
        description="A 1×1 transparent GIF; records an `Email Opened` event for the message the "
        "signed token names (machine opens flagged).",
        tags=("engagement",),
        responses={200: Content("The pixel.", {"type": "string"}, "image/gif"), 404: _TOKEN},
    )
)
async def pixel(request: Request) -> Response:
    """``GET /o/{token}.gif``."""
    state = state_of(request)
    claim = _claim(state, "open", str(request.path_params["token"]))
    if claim is None:
        return _not_found(state, "open")
    task = BackgroundTask(_record, state, _hit(request, claim))
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE, background=task)


@operation(
    Operation(
        summary="A tracked link",
        description="Redirects (302) to the URL inside the signed token and records an "
        "`Email Link Clicked` event (scanner clicks flagged). Never redirects anywhere else.",
        tags=("engagement",),
        responses={302: Content("The redirect.", {"type": "string"}, "text/plain"), 404: _TOKEN},
    )
)
async def click(request: Request) -> Response:
    """``GET /c/{token}``."""
    state = state_of(request)
    claim = _claim(state, "click", str(request.path_params["token"]))
    if claim is None or claim.url is None:
        return _not_found(state, "click")
    task = BackgroundTask(_record, state, _hit(request, claim))
    headers = {**_NO_STORE, "location": claim.url, "referrer-policy": "no-referrer"}
    return Response(b"", status_code=302, headers=headers, background=task)


def routes() -> list[BaseRoute]:
    """The tracking routes."""
    return [
        Route("/o/{token}.gif", pixel, methods=["GET"]),
        Route("/c/{token}", click, methods=["GET"]),
    ]
