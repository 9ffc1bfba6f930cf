"""Cheap in-memory guards: the recent ``messageId`` cache and the per-write-key rate limit."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from personify.warehouse import Warehouse

log = logging.getLogger("personify.ingest.tracking")

_UNKNOWN: Final = object()
RECENT_IDS: Final = 200_000
"""How many recently stored ``messageId`` s are remembered (about 40 MB)."""


class RecentIds:
    """The payload hashes of recently stored ``messageId`` s, oldest forgotten first.

    A resend (the SDK did not get our answer and retries) is answered from here without touching
    the warehouse; an id that is not here is still deduplicated by the store (the warehouse's key).
    Only committed ids are added, so a hit always means "durably stored".
    """

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = capacity
        self._hashes: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hashes)

    def lookup(self, message_id: str) -> tuple[bool, int | None]:
        """``(known, payload hash)``; the hash is ``None`` for ids stored without one."""
        digest = self._hashes.get(message_id, _UNKNOWN)
        if digest is _UNKNOWN:
            return False, None
        return True, digest  # type: ignore[return-value]

    def add(self, pairs: list[tuple[str, int | None]]) -> None:
        """Remember stored ``(message_id, payload_hash)`` pairs."""
        with self._lock:
            hashes = self._hashes
            for message_id, digest in pairs:
                hashes.pop(message_id, None)
                hashes[message_id] = digest
            self._trim()

    def _trim(self) -> None:
        excess = len(self._hashes) - self.capacity
        if excess > 0:
            for key in list(_first(self._hashes, excess)):
                del self._hashes[key]

    def preload(self, older: Iterable[tuple[str, int | None]]) -> None:
        """Remember pairs stored before this process started (oldest first): they rank older
        than every id added meanwhile, so they are forgotten first."""
        merged: dict[str, int | None] = dict(older)
        with self._lock:
            for message_id, digest in self._hashes.items():
                merged.pop(message_id, None)
                merged[message_id] = digest
            self._hashes = merged
            self._trim()

    def preload_from(self, warehouse: Warehouse, sources: Sequence[str]) -> int:
        """Preload the ids of the most recently received events of ``sources`` (up to the
        capacity), so that a sender retrying across a restart is answered from memory; the
        number preloaded. Ids not preloaded are still deduplicated by the store."""
        if not sources:
            return 0
        marks = ", ".join("?" * len(sources))
        # the cut-off first (a top-N of one timestamp column), then only the rows after it:
        # sorting the ids themselves would hold hundreds of MB for a moment
        cutoff = warehouse.fetch(
            f"SELECT received_at FROM events WHERE source IN ({marks}) "
            f"ORDER BY received_at DESC LIMIT 1 OFFSET {max(int(self.capacity) - 1, 0)}",
            list(sources),
        )
        since = "" if not cutoff else "AND received_at >= ? "
        recent = warehouse.fetch_arrow(
            f"SELECT message_id, payload_hash FROM events WHERE source IN ({marks}) {since}"
            f"ORDER BY received_at LIMIT {int(self.capacity)}",
            [*sources, *(cutoff[0] if cutoff else ())],
        )
        ids = recent.column("message_id").to_pylist()
        self.preload(zip(ids, recent.column("payload_hash").to_pylist(), strict=True))
        return len(ids)


def _first(d: dict[str, int | None], n: int) -> list[str]:
    out: list[str] = []
    for key in d:
        if len(out) >= n:
            break
        out.append(key)
    return out


class RateLimiter:
    """A token bucket per write key: ``rate`` events per second, ``burst`` at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: int, *, rate: float, burst: int) -> float:
        """Take ``cost`` tokens; 0.0 when allowed, else the seconds to wait before retrying.

        A request larger than the whole bucket passes when the bucket is full (it could never
        pass otherwise) and empties it."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            need = min(float(cost), float(burst))
            if tokens >= need:
                self._buckets[key] = (tokens - need, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return max((need - tokens) / rate, 0.001)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
