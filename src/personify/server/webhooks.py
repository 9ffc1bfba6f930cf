"""Webhook routes: ``POST /webhooks/{source}`` — signed deliveries from shops, payment providers
and anything speaking Standard Webhooks.

One request, in order: find the ``kind: webhook`` source named in the path (404) — read the raw
body, at most the source's ``max_body_bytes`` (413) — verify the signature and the delivery's age
over the raw bytes (401, nothing stored; :mod:`personify.sources.webhooks`) — store the delivery
once, its receipt and its rows (or quarantine rows) in one transaction — and only then answer 200
``{"status": "accepted" | "duplicate" | "quarantined", …}``; the customer's profile is brought up
to date right after the answer (the real-time path: one apply at a time, run again on a write-write
conflict with another writer — :meth:`~personify.sources.webhooks.WebhookReceiver.refresh`). A
store that loses such a race is retried too; if it still fails: 503 with
``Retry-After`` (the sender retries; nothing half-stored). Delivery bodies and ids are never
logged.

With ``bus: nats://…`` (``serve --role ingest``, or ``all`` with a bus) the verified delivery is
published to JetStream instead (message id: the source and the delivery id, so a retry to any
ingest process is a ``duplicate``), and the answer waits for JetStream's acknowledgement — the
delivery is then durable on the bus; a worker stores it exactly once and applies it
(:func:`personify.realtime.worker.webhook_handler`). The answer carries no row counts then
(the worker maps and validates the record).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.config import WebhookSource
from personify.server.metrics import Counter
from personify.server.openapi import ERROR, Content, Operation, operation
from personify.server.responses import ApiError, JSONResponse, read_body
from personify.server.state import ServerState, state_of
from personify.sources.webhooks import (
    SignatureError,
    Verified,
    WebhookReceiver,
    payload_summary,
    verify,
)

log = logging.getLogger("personify.server.webhooks")
KEY = "webhooks.receiver"


class WebhookAnswer(msgspec.Struct, frozen=True):
    """What happened to the delivery."""

    status: str
    """``accepted`` (stored; with a bus: durable on the bus, stored by a worker), ``duplicate``
    (stored before: no second effect) or ``quarantined`` (stored in the quarantine with the
    reason)."""
    id: str
    """The delivery's id."""
    rows: int | None = None
    quarantined: int | None = None
    reason: str | None = None


class _Webhooks:
    def __init__(self, state: ServerState) -> None:
        self.receiver = WebhookReceiver(state.session)
        self.deliveries: Counter = state.counter(
            "personify_webhook_deliveries_total",
            "Webhook deliveries by source and outcome (accepted, duplicate, quarantined, "
            "refused, failed).",
            ("source", "outcome"),
        )


def _webhooks(state: ServerState) -> _Webhooks:
    found = state.extras.get(KEY)
    if found is None:
        found = state.extras[KEY] = _Webhooks(state)
    assert isinstance(found, _Webhooks)
    return found


def _source(state: ServerState, name: str) -> WebhookSource:
    for source in state.session.project.config.sources:
        if isinstance(source, WebhookSource) and source.name == name:
            return source
    raise ApiError(404, f"no webhook source named {name!r}")


@operation(
    Operation(
        summary="Receive a signed webhook delivery",
        description="Verified over the raw body with the source's scheme (`shopify`: "
        "X-Shopify-Hmac-Sha256; `stripe`: Stripe-Signature t=,v1=; `standard`: webhook-id, "
        "webhook-timestamp, webhook-signature). Stored once per delivery id before the answer.",
        tags=("webhooks",),
        request=Content("The delivery as the sender signed it.", dict[str, Any]),
        responses={
            200: Content("Stored (or stored before).", WebhookAnswer),
            401: Content("Forged, tampered or stale: nothing stored.", ERROR),
            404: Content("No webhook source of that name.", ERROR),
            413: Content("Larger than the source's max_body_bytes.", ERROR),
            503: Content("Could not be stored; retry.", ERROR),
        },
    )
)
async def receive(request: Request) -> Response:
    state = state_of(request)
    source = _source(state, request.path_params["source"])
    hooks = _webhooks(state)
    body = await read_body(request, source.max_body_bytes)
    try:
        verified = verify(source, request.headers, body)
    except SignatureError as e:
        hooks.deliveries.inc(source=source.name, outcome="refused")
        raise ApiError(401, e.message, code="invalid_signature") from None
    writer = state.extras.get("realtime.bus_writer")  # bus: configured (see server.roles)
    if writer is not None:
        return await _publish(writer, hooks, source, verified, body)
    try:
        receipt = await run_in_threadpool(
            hooks.receiver.receive, source, verified, body, refresh=False
        )
    except Exception as e:
        hooks.deliveries.inc(source=source.name, outcome="failed")
        log.error("webhook %s: storing a delivery failed (%s)", source.name, type(e).__name__)
        raise ApiError(
            503, "the delivery could not be stored; retry", headers={"Retry-After": "5"}
        ) from None
    hooks.deliveries.inc(source=source.name, outcome=receipt.outcome)
    # stored: answer now, then bring the profile up to date (the sender need not wait for it)
    applier = state.extras.get("realtime.applier")  # continuous mode: profile, audiences, journeys
    if (
        applier is not None
        and receipt.outcome == "accepted"
        and receipt.key is not None
        and applier.submit_delivery(source.name, source.table, receipt.key)
    ):
        return JSONResponse(payload_summary(receipt))
    later = BackgroundTask(run_in_threadpool, hooks.receiver.refresh, source, receipt)
    return JSONResponse(payload_summary(receipt), background=later)


async def _publish(
    writer: Any, hooks: _Webhooks, source: WebhookSource, verified: Verified, body: bytes
) -> Response:
    """The delivery to the bus; 200 once JetStream has it (``duplicate`` if it had already)."""
    try:
        future = writer.publisher.publish_webhook(
            source.name, verified.delivery_id, verified.signed_at, body, verified.aliases
        )
        seen = await asyncio.wrap_future(future)
    except Exception as e:  # bus unreachable, timeout: nothing acknowledged
        hooks.deliveries.inc(source=source.name, outcome="failed")
        log.error("webhook %s: publishing a delivery failed (%s)", source.name, type(e).__name__)
        raise ApiError(
            503, "the delivery could not be queued; retry", headers={"Retry-After": "5"}
        ) from None
    outcome = "duplicate" if seen else "accepted"
    hooks.deliveries.inc(source=source.name, outcome=outcome)
    return JSONResponse({"status": outcome, "id": verified.delivery_id})


def routes() -> list[BaseRoute]:
    return [Route("/webhooks/{source}", receive, methods=["POST"])]
