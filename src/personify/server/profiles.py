"""Profile routes: ``GET /v1/profiles/{id_or_email}`` — one unified profile, for admins.

The caller sends the project's admin token (``admin_token`` in ``personify.yml``) as
``Authorization: Bearer …``; it is compared in constant time (:func:`hmac.compare_digest`).
Without it, or with a wrong one: 401. An identifier that names nobody: 404. The answer is
:func:`personify.profiles.read_profile`'s — identities, fields with provenance, traits, consent,
segments, tags, recent events. Neither the identifier nor the profile is ever logged (the access
log names the route template only).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.errors import NotFound
from personify.privacy.access import AdminTokens, Grant
from personify.privacy.audit import log_action
from personify.privacy.hashing import optional_key
from personify.profiles import read_profile
from personify.server import auth_limits
from personify.server.openapi import ERROR, SECURITY_SCHEMES, Content, Operation, operation
from personify.server.responses import ApiError, JSONResponse
from personify.server.state import ServerState, state_of

SECURITY_SCHEMES.setdefault(
    "adminToken",
    {
        "type": "http",
        "scheme": "bearer",
        "description": "The project's admin token (`admin_token` in personify.yml, usually "
        "${PERSONIFY_ADMIN_TOKEN}).",
    },
)

_CHALLENGE = {"www-authenticate": 'Bearer realm="personify-admin"'}


class Profile(msgspec.Struct, frozen=True):
    """One customer, unified."""

    customer_id: str
    """The current customer id (merged ids lead here)."""
    profile: dict[str, Any]
    """The ``customers`` row: fields and computed traits."""
    fields: dict[str, Any]
    """Per field: the chosen value, its source, time and rule, and the values it beat."""
    identities: list[dict[str, Any]]
    """Every identifier of the customer, with source and first/last seen."""
    merged_ids: list[str]
    """Customer ids merged into this one."""
    refused_merges: list[dict[str, Any]]
    """Links refused by the over-merge limits, with the reason."""
    consent: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    recent_events: list[dict[str, Any]]


def check_admin(request: Request, state: ServerState, scope: str = "profiles:read") -> Grant:
    """The grant of the request's bearer token for ``scope`` (see :mod:`personify.privacy.access`):
    401 without a valid admin token, 403 when the token lacks the scope, 429 after too many
    wrong tokens from the client's address (its wrong tokens also count in the console sign-in's
    prefix budget, which does not hold the API: :mod:`personify.server.auth_limits`)."""
    client = request.client.host if request.client else "unknown"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    presented = given.strip() if scheme.lower() == "bearer" else None
    wait = auth_limits.retry_after(state, client, presented, held_by_prefix=False)
    if wait:
        raise ApiError(
            429,
            "too many failed admin token attempts: try again later",
            headers={"retry-after": str(math.ceil(wait))},
        )
    config = state.session.project.config
    tokens = AdminTokens(
        [
            ("admin", config.admin_token.reveal() if config.admin_token else "", ("admin",)),
            *((t.name, t.token.reveal(), t.scopes) for t in config.admin_tokens),
        ]
    )
    if not presented:
        raise ApiError(401, "send Authorization: Bearer <admin token>", headers=_CHALLENGE)
    if not tokens:
        raise ApiError(
            401,
            "this project has no admin token (admin_token in personify.yml)",
            headers=_CHALLENGE,
        )
    grant = tokens.check(presented)
    if grant is None:
        auth_limits.failed(state, client, presented)
        raise ApiError(401, "wrong admin token", headers=_CHALLENGE)
    if not grant.allows(scope):
        raise ApiError(403, f"this token lacks the {scope} scope")
    return grant


def _read(state: ServerState, key: str, actor: str) -> dict[str, Any]:
    session = state.session
    found = read_profile(session.warehouse, key, session.project)
    log_action(  # who read whose profile, as keyed hashes (personify audit)
        session.warehouse,
        action="profile_read",
        actor=actor,
        customer_id=found["customer_id"],
        key=optional_key(session.project),
    )
    return found


@operation(
    Operation(
        summary="One customer's unified profile",
        description="By customer id (merged ids followed), email or any identifier: identities, "
        "fields with provenance, computed traits, consent, segments, tags and recent events.",
        tags=("profiles",),
        responses={
            200: Content("The profile.", Profile),
            401: Content("Missing or wrong admin token.", ERROR),
            404: Content("No customer has this identifier.", ERROR),
        },
        security=("adminToken",),
    )
)
async def get_profile(request: Request) -> Response:
    """``GET /v1/profiles/{id_or_email}``."""
    state = state_of(request)
    grant = check_admin(request, state)
    key = str(request.path_params["id_or_email"]).strip()
    if not key:
        raise ApiError(404, "no customer has this identifier")
    try:
        found = await run_in_threadpool(_read, state, key, f"api:{grant.name}")
    except NotFound:
        # the message would quote the identifier: answer without it
        raise ApiError(404, "no customer has this identifier (or no profile yet)") from None
    return JSONResponse(found)


def routes() -> list[BaseRoute]:
    """The profile routes."""
    return [Route("/v1/profiles/{id_or_email}", get_profile, methods=["GET"])]
