"""The ASGI app of ``personify serve``: :func:`create_app`.

The stack, chosen for throughput on one process: Starlette (a thin, fast ASGI toolkit: routing,
requests, responses, nothing else) served by uvicorn on uvloop with the httptools parser (picked
automatically when installed, as ``uvicorn[standard]`` does), and msgspec for JSON (several times
faster than the standard library to encode and to decode-and-validate in one pass into typed
Structs — the same Structs that describe the bodies in ``/openapi.json``). No ORM, no validation
framework, no per-request middleware beyond the one below.

Routes are grouped by module, each exposing ``routes() -> list[BaseRoute]``
(:mod:`~personify.server.ops`, :mod:`~personify.server.control`; tracking, webhooks, profiles,
privacy, unsubscribe and the marketer console (:mod:`~personify.server.console`) join
:data:`ROUTE_GROUPS` the same way). Every error — a route's
:class:`~personify.server.responses.ApiError`, Starlette's 404/405/413, an unexpected exception —
answers ``{"error": {"code": …, "message": …}}`` (the console's pages answer HTML).

One pure-ASGI middleware counts requests and latency by *route template* (never the raw path, which
may hold an e-mail address), writes a one-line access log in the same terms (the probes —
:data:`PROBES` — at DEBUG unless they fail: a Kubernetes cluster asks every few seconds), stamps the
``personify-instance`` header, and turns an unexpected exception into a 500 whose log holds the
exception type and stack, not its message (messages can quote data).
"""

from __future__ import annotations

import logging
import secrets
import time
import traceback
from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personify.config import Secret
from personify.server import (
    collector,
    console,
    control,
    engagement,
    esp_webhooks,
    ops,
    preferences,
    privacy,
    profiles,
    test_sends,
    tracking,
    unsubscribe,
    webhooks,
)
from personify.server.protocol import INSTANCE_HEADER
from personify.server.responses import ApiError, error_response
from personify.server.state import ServerState
from personify.session import Session

log = logging.getLogger("personify.server")
access_log = logging.getLogger("personify.server.access")

RouteGroup = Callable[[], list[BaseRoute]]

ROUTE_GROUPS: tuple[RouteGroup, ...] = (
    ops.routes,
    tracking.routes,
    collector.routes,
    profiles.routes,
    privacy.routes,
    test_sends.routes,
    esp_webhooks.routes,
    webhooks.routes,
    unsubscribe.routes,
    preferences.routes,
    engagement.routes,
    console.routes,
)
"""Route groups every server has, in matching order."""

PROBES = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
"""Routes polled by orchestrators and scrapers: access-logged at DEBUG when they succeed (status
below 400), at INFO like every other route when they fail."""


def _template(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, Route | Mount):
        return route.path
    return "<unmatched>"


class ObserveMiddleware:
    """Metrics, access log, instance header, and a safe 500 for unexpected exceptions."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_observed(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message).append(INSTANCE_HEADER, self.state.instance)
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            route = _template(scope)
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "unhandled %s in %s %s\n%s", type(exc).__name__, scope["method"], route, frames
            )
            if response_started:
                raise
            response = error_response(500, "internal error; the server log has the details")
            await response(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            route = _template(scope)
            self.state.requests.inc(method=scope["method"], route=route, status=str(status))
            self.state.latency.observe(seconds, route=route)
            level = logging.DEBUG if route in PROBES and status < 400 else logging.INFO
            access_log.log(level, "%s %s %d %.1fms", scope["method"], route, status, seconds * 1000)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)


def create_app(
    session: Session,
    *,
    control_token: Secret | str | None = None,
    instance: str | None = None,
    groups: Sequence[RouteGroup] = ROUTE_GROUPS,
) -> Starlette:
    """The Personify ASGI app over ``session`` (whose warehouse the caller opens and closes).

    ``control_token``: enables the control channel (``POST /_personify/cli``) for holders of this
    token — given when the warehouse is single-process and other CLI processes must forward.
    ``instance``: this server's id, echoed in the ``personify-instance`` header (random if not
    given). ``groups``: the route groups to serve.
    """
    token = Secret(control_token) if isinstance(control_token, str) else control_token
    state = ServerState(
        session=session, instance=instance or secrets.token_hex(8), control_token=token
    )
    routes: list[BaseRoute] = [route for group in groups for route in group()]
    if token is not None:
        routes += control.routes()
    app = Starlette(
        routes=routes,
        middleware=[
            # open pixel and click redirect answered before routing (the hottest routes)
            Middleware(engagement.FastTracking, state=state),
            Middleware(ObserveMiddleware, state=state),
        ],
        exception_handlers={HTTPException: _http_error, ApiError: _api_error},
    )
    app.state.personify = state
    return app
