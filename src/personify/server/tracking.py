"""The Segment-compatible tracking API: ``POST /v1/track|identify|page|screen|group|alias|batch``.

One request, in order: authenticate the write key (401) — read the body, at most 500 KB for a batch
and 32 KB for a single event, inflating gzip with the same bound (413) — check UTF-8 and decode the
envelope (400) — take the events from the source's token bucket (429 with ``Retry-After``) —
normalize every event (:mod:`personify.ingest.tracking`) — hand the rows to the group writer and
wait for the commit (503 with ``Retry-After`` if it fails: never a 2xx for what is not stored).

Answers: 200 ``{"success": true}`` when every event was accepted (a resent ``messageId`` counts as
accepted: it is already stored); 200 with per-event results (index, JSON pointer, reason, outcome)
when some were quarantined or rejected; on a single-event endpoint, an event that is quarantined
(``conflicting_duplicate`` included) answers 400 with the same results — Segment and RudderStack
SDKs retry a 5xx or 429 and drop a 4xx, and no retry of a quarantined event could succeed. Always
``accepted + quarantined + rejected == received``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify import clock
from personify.config import TrackingSource, duration_seconds
from personify.errors import PersonifyError
from personify.ingest.tracking.intake import (
    Intake,
    counts,
    drop_known,
    settle,
    summary,
    take_in,
)
from personify.ingest.tracking.limits import retry_after
from personify.ingest.tracking.messages import (
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    TYPES,
    Accepted,
    BatchBody,
    BatchResult,
    Envelope,
    ErrorInfo,
    EventRefused,
    KeyOnly,
    Message,
)
from personify.ingest.tracking.normalize import Inputs, parse_time, pointer_of
from personify.ingest.tracking.writer import StoreUnavailable
from personify.server.openapi import ERROR, SECURITY_SCHEMES, Content, Operation, operation
from personify.server.responses import JSONResponse
from personify.server.state import state_of
from personify.server.tracking_http import (
    CORS_HEADERS,
    PREFLIGHT_HEADERS,
    check_utf8,
    client_ip,
    error,
    read_body,
)
from personify.server.tracking_state import Tracking, tracking_of

log = logging.getLogger("personify.server.tracking")

SECURITY_SCHEMES["writeKey"] = {
    "type": "http",
    "scheme": "basic",
    "description": "A tracking source's write key as the user name, empty password (as the "
    "Segment and RudderStack SDKs send it). Without the header, `writeKey` in the body.",
}
_ACCEPTED: Final = msgspec.json.encode(Accepted())
_WRITE_KEY_TYPE: Final = (
    "writeKey must be a string: the source's write key (or leave it out and send the key as "
    "the Basic auth user name)"
)
_ERRORS: Final[dict[int, Content]] = {
    400: Content("Not JSON, not UTF-8, or the wrong shape (nothing stored).", ERROR),
    401: Content("No or unknown write key.", ERROR),
    413: Content("Over 500 KB (a batch) or 32 KB (an event), also once decompressed.", ERROR),
    415: Content("A Content-Encoding other than gzip.", ERROR),
    429: Content("The write key's rate limit; retry after `Retry-After` seconds.", ERROR),
    503: Content("The events could not be stored; retry (nothing was stored).", ERROR),
}


def _tracking(request: Request) -> Tracking:
    try:
        return tracking_of(state_of(request))
    except PersonifyError as e:
        raise error(503, f"the tracking API is not ready: {e.message}", "unavailable") from None


def _source(tracking: Tracking, request: Request) -> TrackingSource | None:
    if not len(tracking.keys):
        raise error(401, "the project has no tracking source with a write key", "unauthorized")
    return tracking.keys.from_header(request.headers.get("authorization"))


def _by_body_key(
    tracking: Tracking, key: str | None, source: TrackingSource | None = None
) -> TrackingSource:
    """The source of the request: the ``Authorization`` header's (``source``) or else the body's
    ``writeKey``. A write key belongs to one source: a body key naming another source than the
    header is refused (401), never used to write as that source."""
    if source is not None:
        if key and tracking.keys.match(key) is not source:
            raise error(
                401,
                "the body's writeKey is not the Authorization header's: a write key writes for "
                "its own source only",
                "unauthorized",
            )
        return source
    found = tracking.keys.match(key) if key else None
    if found is None:
        raise error(401, "send the write key as the Basic auth user name", "unauthorized")
    return found


def _throttle(tracking: Tracking, source: TrackingSource, events: int) -> None:
    burst = source.rate_burst or max(1, int(source.rate_limit * 2))
    wait = tracking.limiter.take(source.name, events, rate=source.rate_limit, burst=burst)
    if wait:
        tracking.events.inc(events, source=source.name, outcome="rejected")
        raise error(
            429,
            f"source {source.name!r} is over its rate limit of {source.rate_limit:g} events/s",
            "rate_limited",
            {"Retry-After": retry_after(wait)},
        )


def _inputs(request: Request, tracking: Tracking, source: TrackingSource, **kw: Any) -> Inputs:
    if request.headers.get("sec-gpc", "").strip() == "1":  # Global Privacy Control: the
        # browser's do-not-sell/share signal, kept as context.gpc (the privacy stage records it)
        kw["context"] = {**(kw.get("context") or {}), "gpc": True}
    return Inputs(
        source=source.name,
        received_at=clock.now(),
        ip=client_ip(request),
        plan=tracking.plan(source),
        warn_only=source.tracking_plan_mode == "warn",
        future_tolerance=duration_seconds(source.future_tolerance),
        **kw,
    )


async def _take_in(
    tracking: Tracking, source: TrackingSource, body: bytes, envelope: Envelope, inputs: Inputs
) -> Intake:
    """The batch normalized — by a helper process when the server has them (the same
    :class:`Intake` either way, see :mod:`personify.ingest.tracking.pool`)."""
    pool = tracking.pool
    cache = tracking.plans.get(source.name) if pool is not None else None
    plan = cache.key() if cache is not None and inputs.plan is not None else None
    if pool is not None and (plan is not None or inputs.plan is None):
        # (no key: the plan keeps the last good version of a file since broken, which no
        # helper can read — normalized in process)
        intake = await pool.normalize(
            body, inputs, plan, prefix="/batch", events=len(envelope.batch)
        )
        if tracking.normalized is not None:
            tracking.normalized.inc(where="in_process" if intake is None else "helper")
        if intake is not None:
            drop_known(intake, tracking.recent)
            return intake
    return take_in([bytes(raw) for raw in envelope.batch], inputs, tracking.recent)


async def _store(tracking: Tracking, source: TrackingSource, intake: Intake) -> None:
    if intake.rows or intake.quarantine:
        try:
            status = await tracking.writer.write(intake.rows, intake.quarantine, intake.locations)
        except StoreUnavailable as e:
            tracking.events.inc(intake.received, source=source.name, outcome="rejected")
            raise error(503, e.message, "store_unavailable", {"Retry-After": "1"}) from None
        settle(intake, status, tracking.recent)
    accepted, quarantined, rejected = counts(intake)
    for outcome, n in (
        ("accepted", accepted - intake.duplicates),
        ("duplicate", intake.duplicates),
        ("quarantined", quarantined),
        ("rejected", rejected),
    ):
        if n:
            tracking.events.inc(n, source=source.name, outcome=outcome)


def _answer(result: BatchResult | None) -> Response:
    if result is None:
        return Response(_ACCEPTED, media_type="application/json", headers=CORS_HEADERS)
    return JSONResponse(result, headers=CORS_HEADERS)


def _decode_envelope(body: bytes) -> Envelope:
    check_utf8(body)
    try:
        return msgspec.json.decode(body, type=Envelope)
    except msgspec.ValidationError as e:
        detail = str(e).split(" - at ", 1)[0]
        where = pointer_of(e)
        if where == "/writeKey":
            raise error(400, _WRITE_KEY_TYPE, "invalid_request") from None
        raise error(400, f"{detail} at {where or 'the body'}", "invalid_request") from None
    except (msgspec.DecodeError, RecursionError, ValueError) as e:
        raise error(400, f"the body is not JSON ({e})", "invalid_json") from None


def _batch_sent_at(envelope: Envelope) -> Any:
    try:
        return parse_time(envelope.sent_at) if envelope.sent_at else None
    except ValueError:
        raise error(
            400, "sentAt is not an ISO 8601 instant (at /sentAt)", "invalid_request"
        ) from None


@operation(
    Operation(
        summary="Send many events at once (any types)",
        description="What the Segment and RudderStack SDKs call. Each event needs a `type`. "
        '200 `{"success": true}` when every event was accepted, else per-event results.',
        tags=("tracking",),
        request=Content("The events.", BatchBody),
        responses={
            200: Content(
                "Stored (or already stored), with per-event results if not all.", BatchResult
            ),
            **_ERRORS,
        },
        security=("writeKey",),
    )
)
async def batch(request: Request) -> Response:
    """``POST /v1/batch``."""
    tracking = _tracking(request)
    source = _source(tracking, request)
    body = await read_body(request, MAX_REQUEST_BYTES)
    envelope = _decode_envelope(body)
    source = _by_body_key(tracking, envelope.write_key, source)
    sent_at = _batch_sent_at(envelope)
    _throttle(tracking, source, len(envelope.batch))
    inputs = _inputs(
        request,
        tracking,
        source,
        sent_at=sent_at,
        context=envelope.context,
        integrations=envelope.integrations,
    )
    intake = await _take_in(tracking, source, body, envelope, inputs)
    await _store(tracking, source, intake)
    return _answer(summary(intake))


async def single(request: Request, kind: str) -> Response:
    """``POST /v1/{type}``: one event, its type given by the path."""
    tracking = _tracking(request)
    source = _source(tracking, request)
    body = await read_body(request, MAX_EVENT_BYTES, code="event_too_large")
    check_utf8(body)
    try:
        key = msgspec.json.decode(body, type=KeyOnly)
    except msgspec.ValidationError as e:
        if pointer_of(e) == "/writeKey":
            raise error(400, _WRITE_KEY_TYPE, "invalid_request") from None
        raise error(400, "the body must be a JSON object", "invalid_request") from None
    except (msgspec.DecodeError, RecursionError, ValueError) as e:
        raise error(400, f"the body is not JSON ({e})", "invalid_json") from None
    source = _by_body_key(tracking, key.write_key, source)
    _throttle(tracking, source, 1)
    intake = take_in(
        [body], _inputs(request, tracking, source, kind=kind), tracking.recent, prefix=""
    )
    await _store(tracking, source, intake)
    result = summary(intake)
    if result is None:
        return _answer(result)
    # quarantined — a conflicting duplicate too: a 4xx, which SDKs do not retry (a retry could
    # not succeed) and log; a resend, whatever its bytes, is a duplicate and answered 200 above
    first = result.errors[0]
    refused = EventRefused(
        error=ErrorInfo(
            first.reason,
            f"{first.message} (at {first.pointer or 'the body'}); the event is kept in quarantine",
        ),
        received=result.received,
        accepted=result.accepted,
        duplicates=result.duplicates,
        quarantined=result.quarantined,
        rejected=result.rejected,
        errors=result.errors,
    )
    return JSONResponse(refused, status_code=400, headers=CORS_HEADERS)


async def preflight(request: Request) -> Response:
    """CORS preflight of the tracking endpoints."""
    return Response(status_code=204, headers=PREFLIGHT_HEADERS)


def _single_operation(kind: str) -> Operation:
    return Operation(
        summary=f"Send one {kind} event",
        description=f"The body is one Segment `{kind}` message (its `type` is implied). "
        "400 when the event is quarantined (invalid, refused by the tracking plan, or another "
        "event reusing a stored `messageId`).",
        tags=("tracking",),
        request=Content(f"One {kind} message.", Message),
        responses={
            200: Content("Stored, or already stored.", BatchResult),
            **_ERRORS,
            400: Content(
                "Not JSON, or the event was quarantined (with the results).", EventRefused
            ),
        },
        security=("writeKey",),
        operation_id=kind,
    )


def _single_endpoint(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await single(request, kind)

    endpoint.__name__ = kind
    endpoint.__doc__ = f"``POST /v1/{kind}``."
    return operation(_single_operation(kind))(endpoint)


SHORT_PATHS: Final = {"b": "batch", **{kind[0]: kind for kind in TYPES}}
"""analytics.js's short paths (``/v1/t`` … and ``/v1/b`` for batches), served as aliases."""


def routes() -> list[BaseRoute]:
    """The tracking routes, analytics.js's short aliases, and their CORS preflights."""
    out: list[BaseRoute] = [Route("/v1/batch", batch, methods=["POST"])]
    out += [Route(f"/v1/{kind}", _single_endpoint(kind), methods=["POST"]) for kind in TYPES]
    for short, kind in SHORT_PATHS.items():
        target = batch_alias if kind == "batch" else single_alias(kind)
        out.append(Route(f"/v1/{short}", target, methods=["POST"], name=f"alias_{short}"))
    out += [
        Route(f"/v1/{name}", preflight, methods=["OPTIONS"], name=f"preflight_{name}")
        for name in ("batch", *TYPES, *SHORT_PATHS)
    ]
    return out


async def batch_alias(request: Request) -> Response:
    """``POST /v1/b``: :func:`batch`, left out of the OpenAPI."""
    return await batch(request)


def single_alias(kind: str) -> Any:
    """An undocumented endpoint for ``kind`` (the short paths stay out of the OpenAPI)."""

    async def endpoint(request: Request) -> Response:
        return await single(request, kind)

    return endpoint
