"""Both ends of the bus inside ``personify serve``: the tracking routes' writer of an ingest
process (:class:`BusWriter`, in place of the group-commit writer) and a worker's loop
(:func:`start_worker`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from personify.ingest.tracking.store import DUPLICATE, NEW, store
from personify.ingest.tracking.writer import StoreUnavailable, WriterStats
from personify.realtime.bus import BusSettings, Consumer, Publisher
from personify.realtime.continuous import Applier
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
    warehouse: Warehouse, settings: BusSettings, applier: Applier | None = None
) -> Consumer:
    """Consume the stream into ``warehouse`` until the consumer is closed; what was new goes to
    ``applier`` (continuous mode)."""

    def handle(rows: list[tuple[Any, ...]], held: list[tuple[Any, ...]]) -> None:
        for attempt in range(3):
            try:
                status = store(warehouse, rows, held)  # one row per messageId, however delivered
                if applier is not None:
                    applier.submit(str(r[0]) for r, s in zip(rows, status, strict=True) if s == NEW)
                return
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))

    return Consumer(settings, handle)
