"""Continuous mode: every event the tracking API (or a bus worker) stored is applied to its
customer within a second — identity and profile (fields and computed traits) through the very
pass the batch stage runs (:func:`personify.profiles.realtime.apply`), then the profile cache is
invalidated for the customers it touched.

One thread per process takes every message id waiting (coalescing a busy second into one pass)
and applies them together. Best effort by design: a pass that fails is logged and dropped, and
the batch path (``personify run``) catches up with anything missed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from personify.identity.sightings import Scope
from personify.ingest.tracking.store import NEW
from personify.session import Session

log = logging.getLogger("personify.realtime")

MAX_PASS: Final = 5_000
"""Events applied in one pass at most."""
_BY_IDS: Final = "message_id IN (SELECT UNNEST(CAST(? AS VARCHAR[])))"


class Applier:
    """The continuous-mode thread of one process."""

    def __init__(
        self, session: Session, on_applied: Callable[[int, float], None] | None = None
    ) -> None:
        """``on_applied(events, seconds_since_the_oldest_was_queued)`` after each pass."""
        self.session = session
        self.on_applied = on_applied
        self.applied = 0
        self.failures = 0
        self._queue: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="personify-applier", daemon=True)
        self._thread.start()

    def submit(self, message_ids: Iterable[str]) -> None:
        now = time.perf_counter()
        for mid in message_ids:
            self._idle.clear()
            self._queue.put((mid, now))

    @property
    def depth(self) -> int:
        """Events waiting to be applied."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until everything submitted so far is applied (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.wait(0.05):
                return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_PASS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._apply(batch)
            if self._queue.empty():
                self._idle.set()
            if stop:
                return

    def _apply(self, batch: list[tuple[str, float]]) -> None:
        from personify.profiles.realtime import apply

        ids = sorted({mid for mid, _ in batch})
        try:
            apply(self.session, Scope(events=(_BY_IDS, ([*ids],))))
        except Exception as e:  # stored already: the batch path catches up
            self.failures += 1
            log.warning("real-time pass over %d events failed (%s)", len(ids), type(e).__name__)
            return
        self.applied += len(ids)
        if self.on_applied is not None:
            self.on_applied(len(ids), time.perf_counter() - min(t for _, t in batch))


class ApplyingWriter:
    """Wraps the tracking routes' writer: what it stored as new goes to the :class:`Applier`."""

    def __init__(self, inner: Any, applier: Applier) -> None:
        self.inner = inner
        self.applier = applier
        self.stats = inner.stats

    async def write(
        self, rows: Sequence[Any], quarantine: Sequence[Any] = (), locations: Sequence[str] = ()
    ) -> list[int]:
        status: list[int] = await self.inner.write(rows, quarantine, locations)
        self.applier.submit(str(r[0]) for r, s in zip(rows, status, strict=True) if s == NEW)
        return status

    def write_sync(self, rows: Sequence[Any], quarantine: Sequence[Any] = ()) -> list[int]:
        status: list[int] = self.inner.write_sync(rows, quarantine)
        self.applier.submit(str(r[0]) for r, s in zip(rows, status, strict=True) if s == NEW)
        return status

    def close(self, timeout: float = 10.0) -> None:
        self.inner.close(timeout)
        with contextlib.suppress(Exception):
            self.applier.wait_idle(timeout)
