"""Tracking routes: ``GET /o/{token}.gif`` (the open pixel) and ``GET /c/{token}`` (a click).

Both verify the signed token (:func:`personify.engagement.verify`, HMAC with the project's
``signing_key``); a forged, altered or malformed token answers 404 and records nothing. A valid
one answers at once — the pixel (a 43-byte transparent GIF) or a 302 to the URL *inside the
token* (never a URL from the query string: no open redirect) — and the hit joins a queue that one
recorder thread drains: every hit waiting is recorded together
(:func:`personify.engagement.record.record_many`: one lookup, one store), so a slow warehouse never
delays a reader and a burst of hits costs one transaction, not one each. Hits still queued when
the server stops are lost (they are measurements, not orders). ``HEAD`` is answered the same
way and flagged as a scanner's. No authentication: the token is the credential; the access log
names the route template, never the token.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify import clock
from personify.delivery.tokens import project_key
from personify.engagement import Hit, TrackingClaim, verify
from personify.engagement.record import record_many
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


RECORDER = "engagement.recorder"
BATCH = 2000
_START = threading.Lock()


def _drain(state: ServerState, hits: queue.SimpleQueue[Hit]) -> None:
    counter = _counter(state)
    while True:
        batch = [hits.get()]
        while len(batch) < BATCH:
            try:
                batch.append(hits.get_nowait())
            except queue.Empty:
                break
        session = state.session
        try:
            done = record_many(session.warehouse, session.project, batch)
        except PersonifyError as e:
            log.warning("%d tracking hits not recorded: %s", len(batch), type(e).__name__)
            for hit in batch:
                counter.inc(kind=hit.claim.kind, outcome="failed")
            continue
        except Exception:  # keep the recorder alive whatever happens; the log has the type
            log.exception("tracking hits not recorded")
            continue
        for hit, result in zip(batch, done, strict=True):
            if result.message_id is None:
                outcome = "unknown"
            elif not result.new:
                outcome = "repeat"
            else:
                outcome = "machine" if result.machine else "person"
            counter.inc(kind=hit.claim.kind, outcome=outcome)


def _record(state: ServerState, hit: Hit) -> None:
    """Queue ``hit`` for the recorder thread (started on first use)."""
    hits = state.extras.get(RECORDER)
    if hits is None:
        with _START:
            hits = state.extras.get(RECORDER)
            if hits is None:
                hits = queue.SimpleQueue()
                thread = threading.Thread(
                    target=_drain, args=(state, hits), name="engagement-recorder", daemon=True
                )
                thread.start()
                state.extras[RECORDER] = hits
    assert isinstance(hits, queue.SimpleQueue)
    hits.put(hit)


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
    _record(state, _hit(request, claim))
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


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
    _record(state, _hit(request, claim))
    headers = {**_NO_STORE, "location": claim.url, "referrer-policy": "no-referrer"}
    return Response(b"", status_code=302, headers=headers)


def routes() -> list[BaseRoute]:
    """The tracking routes."""
    return [
        Route("/o/{token}.gif", pixel, methods=["GET"]),
        Route("/c/{token}", click, methods=["GET"]),
    ]
