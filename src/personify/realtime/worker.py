"""Both ends of the bus inside ``personify serve``: the tracking routes' writer of an ingest
process (:class:`BusWriter`, in place of the group-commit writer; the webhook route publishes
through its publisher too) and a worker's loop (:func:`start_worker`: events, and webhook
deliveries with :func:`webhook_handler`).

A worker's handlers store what they are given and hand it to continuous mode; they return the
submission's :data:`~personify.realtime.continuous.Applied` future, and the consumer acks the
messages only once it resolved. What was delivered before (a worker died after storing it,
before its pass had applied it) is found stored — a duplicate — and submitted again: applying
twice changes nothing, and nothing stored is left unapplied."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from personify.errors import ConfigError
from personify.ingest.tracking.store import DUPLICATE, NEW, store
from personify.ingest.tracking.writer import StoreUnavailable, WriterStats
from personify.realtime.bus import BusSettings, Consumer, Publisher
from personify.realtime.continuous import Applied, Applier
from personify.session import Session
from personify.warehouse import Warehouse


class BusWriter:
    """What the tracking routes write through on an ingest process: the events go to the bus
    (see :mod:`personify.realtime.bus`), the answer waits for JetStream's acknowledgements."""

    def __init__(self, settings: BusSettings) -> None:
        self.publisher = Publisher(settings)
        self.stats = WriterStats()

    async def write(
        self,
        rows: Sequence[Any],
        quarantine: Sequence[Any] = (),
        locations: Sequence[str] = (),
    ) -> list[int]:
        """Publish; per row :data:`NEW`, or :data:`DUPLICATE` for a resend JetStream knows."""
        try:
            seen = await asyncio.wrap_future(self.publisher.publish(rows, quarantine))
        except Exception as e:  # bus unreachable, timeout: nothing acknowledged
            self.stats.failures += 1
            raise StoreUnavailable(
                f"the bus did not take the events ({type(e).__name__})"
            ) from None
        self.stats.commits += 1
        self.stats.rows += len(rows)
        return [DUPLICATE if dup else NEW for dup in seen]

    def write_sync(self, rows: Sequence[Any], quarantine: Sequence[Any] = ()) -> list[int]:
        seen = self.publisher.publish(rows, quarantine).result(60)
        return [DUPLICATE if dup else NEW for dup in seen]

    def close(self, timeout: float = 10.0) -> None:
        self.publisher.close()


def start_worker(
    warehouse: Warehouse,
    settings: BusSettings,
    applier: Applier | None = None,
    session: Session | None = None,
) -> Consumer:
    """Consume the stream into ``warehouse`` until the consumer is closed; what was new goes to
    ``applier`` (continuous mode), and so do the syncs the ingest processes announced. With
    ``session`` (the project's), webhook deliveries the ingest processes published are stored
    too (:func:`webhook_handler`)."""

    def handle(
        rows: list[tuple[Any, ...]], held: list[tuple[Any, ...]], again: list[bool]
    ) -> Applied[None] | None:
        for attempt in range(3):
            try:
                status = store(warehouse, rows, held)  # one row per messageId, however delivered
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        if applier is None:
            return None
        # a redelivered event found stored may never have been applied (its worker died first)
        status = [NEW if redelivered else s for s, redelivered in zip(status, again, strict=True)]
        return applier.submit_stored(rows, status)

    hooks = None if session is None else webhook_handler(session, applier)
    synced = None if applier is None else applier.submit_synced
    return Consumer(settings, handle, handle_webhook=hooks, handle_synced=synced)


def webhook_handler(
    session: Session, applier: Applier | None = None
) -> Callable[[tuple[Any, ...]], Applied[None] | None]:
    """Stores one published delivery ``(source, delivery_id, signed_at, body[, aliases])`` as
    the route would have (its signature was verified by the ingest process that published it):
    once per source and delivery id — a redelivery after a worker died finds its receipt, and
    a receipt under one of its aliases (a Shopify delivery stored under its webhook id before
    the event id was preferred) makes it a duplicate too — then its
    record goes to ``applier`` (its :data:`Applied` future is returned; a redelivery's record
    goes again) or, without continuous mode, through the receiver's real-time path. Raises (the
    delivery stays unacked, redelivered later) when it cannot be stored, or names a source this
    project does not have."""
    from personify.config import WebhookSource
    from personify.sources.webhooks import Verified, WebhookReceiver

    receiver = WebhookReceiver(session)

    def handle(message: tuple[Any, ...]) -> Applied[None] | None:
        name, delivery_id, signed_at, body, *more = message
        aliases = tuple(str(a) for a in more[0]) if more and more[0] else ()
        source = next(
            (
                s
                for s in session.project.config.sources
                if isinstance(s, WebhookSource) and s.name == name
            ),
            None,
        )
        if source is None:
            raise ConfigError(
                f"a webhook delivery on the bus names no webhook source of this project ({name!r})",
                key="sources",
                hint="ingest and worker processes must run the same personify.yml",
            )
        verified = Verified(str(delivery_id), signed_at, aliases)
        receipt = receiver.receive(source, verified, bytes(body), refresh=False)
        key = receipt.key
        if receipt.outcome == "duplicate" and applier is not None:
            key = receiver.key_of(source, bytes(body))  # stored before; maybe never applied
        elif receipt.outcome != "accepted":
            return None
        if key is None:
            return None
        applied = None
        if applier is not None:
            applied = applier.submit_delivery(source.name, source.table, key)
        if applied is None and receipt.outcome == "accepted":
            receiver.refresh(source, receipt)
        return applied

    return handle
