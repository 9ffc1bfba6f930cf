"""ESP event webhooks: ``POST /webhooks/esp/{provider}`` — bounces and complaints → suppressions;
opens, clicks and deliveries → engagement events.

``provider`` names an entry of ``delivery.webhooks`` (``sendgrid``, ``postmark`` or
``standard``); an unconfigured provider answers 404. The request is verified first
(:func:`personify.delivery.events.verify`: Standard Webhooks HMAC, SendGrid's ECDSA signature or
HTTP Basic, with the configured secret) — 401 otherwise, and nothing is read further. The events
(:func:`~personify.delivery.events.parse`) that suppress — hard bounces, spam complaints,
unsubscribes — are written in one go (:func:`personify.delivery.suppress.apply_events`); a
redelivered payload writes nothing new. Opens, clicks and deliveries carrying the message's
``personify_key`` become ``Email Opened`` / ``Email Link Clicked`` / ``Email Delivered`` events
(:mod:`personify.engagement.esp`; machine opens flagged, deduplicated against redeliveries and
against what the pixel and redirect recorded); complaints and unsubscribes carrying it also
become ``Email Marked as Spam`` / ``Email Unsubscribed`` events, counted against the message's
journey, step and variant (``attributed``). The answer counts what happened, never an address.
(Sources' webhooks live at ``/webhooks/{source}``; this distinct prefix keeps the two apart.)
"""

from __future__ import annotations

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.config import EspWebhook
from personify.delivery.events import EspEvent, WebhookRejected, parse, verify
from personify.delivery.suppress import EventsApplied, apply_events
from personify.engagement.esp import EspEngagement, parse_touches, record_touches
from personify.errors import ConfigError, PersonifyError
from personify.server.metrics import Counter
from personify.server.openapi import ERROR, Content, Operation, operation
from personify.server.responses import ApiError, JSONResponse, read_body
from personify.server.state import ServerState, state_of

BODY_LIMIT = 10 * 1024 * 1024


class EspWebhookResult(msgspec.Struct, frozen=True):
    """What one webhook delivery did."""

    received: int
    """Events in the payload."""
    suppressing: int
    """Events that suppress an address (hard bounce, complaint, unsubscribe)."""
    written: int
    """New suppression rows (0 for a redelivery)."""
    engagement: int = 0
    """Opens, clicks and deliveries naming a message (``personify_key``)."""
    recorded: int = 0
    """New engagement events (0 for a redelivery or a touch the pixel already recorded)."""
    attributed: int = 0
    """New ``Email Marked as Spam`` / ``Email Unsubscribed`` events: complaints and
    unsubscribes naming a message (``personify_key``), counted against its journey (0 for a
    redelivery, or an unsubscribe its link already recorded)."""


def _counter(state: ServerState) -> Counter:
    return state.counter(
        "personify_esp_webhook_events_total",
        "ESP webhook events by provider and outcome (suppressing, engagement, "
        "engagement_repeat, attributed, ignored; refused counts requests).",
        ("provider", "outcome"),
    )


def _webhook(state: ServerState, provider: str) -> EspWebhook:
    for webhook in state.session.project.config.delivery.webhooks:
        if webhook.provider == provider:
            return webhook
    raise ApiError(404, f"no ESP webhook configured for {provider!r} (delivery.webhooks)")


def _apply(
    state: ServerState, provider: str, received: int, events: list[EspEvent], body: bytes
) -> tuple[EventsApplied, EspEngagement]:
    session = state.session
    applied = apply_events(session.warehouse, session.project, provider, received, events)
    touches = parse_touches(provider, body)
    engaged = record_touches(session.warehouse, session.project, provider, touches)
    return applied, engaged


@operation(
    Operation(
        summary="ESP delivery, bounce, complaint, open and click events",
        description="SendGrid Event Webhook arrays, Postmark webhook objects, or either signed "
        "the Standard Webhooks way. Hard bounces, complaints and unsubscribes become "
        "suppressions; opens, clicks and deliveries naming a message (personify_key) become "
        "engagement events; redeliveries change nothing.",
        tags=("webhooks",),
        request=Content("The ESP's event payload.", {"type": ["array", "object"]}),
        responses={
            200: Content("What was applied.", EspWebhookResult),
            400: Content("Not a readable payload.", ERROR),
            401: Content("Not proven to come from the ESP.", ERROR),
            404: Content("No webhook configured for this provider.", ERROR),
        },
    )
)
async def receive(request: Request) -> Response:
    """``POST /webhooks/esp/{provider}``."""
    state = state_of(request)
    provider = str(request.path_params["provider"])
    webhook = _webhook(state, provider)
    body = await read_body(request, BODY_LIMIT)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        verify(webhook, headers, body)
        received, events = parse(provider, body)
    except WebhookRejected as e:
        _counter(state).inc(provider=provider, outcome="refused")
        raise ApiError(e.status, e.message) from None
    except PersonifyError as e:  # a verification key that cannot be used
        raise ApiError(503, f"the {provider} webhook is misconfigured: {e.message}") from None
    try:
        done, engaged = await run_in_threadpool(_apply, state, provider, received, events, body)
    except ConfigError:
        raise ApiError(503, "the project has no signing_key to hash suppressions") from None
    counter = _counter(state)
    counter.inc(done.suppressing, provider=provider, outcome="suppressing")
    recorded = engaged.recorded - engaged.feedback_recorded  # opens, clicks, deliveries
    repeated = engaged.repeated - engaged.feedback_repeated
    counter.inc(recorded, provider=provider, outcome="engagement")
    counter.inc(repeated, provider=provider, outcome="engagement_repeat")
    counter.inc(engaged.feedback_recorded, provider=provider, outcome="attributed")
    ignored = done.received - done.suppressing - recorded - repeated  # complaints: suppressing
    counter.inc(max(ignored, 0), provider=provider, outcome="ignored")
    return JSONResponse(
        EspWebhookResult(
            done.received,
            done.suppressing,
            done.written,
            engaged.touches - engaged.feedback,
            recorded,
            engaged.feedback_recorded,
        )
    )


def routes() -> list[BaseRoute]:
    """The ESP webhook route."""
    return [Route("/webhooks/esp/{provider}", receive, methods=["POST"])]
