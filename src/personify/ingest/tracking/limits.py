"""Cheap in-memory guards: the recent ``messageId`` cache and the per-write-key rate limit."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from personify.warehouse import Warehouse

log = logging.getLogger("personify.ingest.tracking")

RECENT_IDS: Final = 200_000
"""How many recently stored ``messageId`` s are remembered at least (about 9 MB)."""
GENERATIONS: Final = 4
"""The remembered ids are kept in this many generations (plus the newest one, filling)."""


class RecentIds:
    """What is remembered of recently stored ``messageId`` s: a 64-bit hash of each id with its
    payload hash, so a resend (the SDK did not get our answer and retries) is answered without
    touching the warehouse. Oldest forgotten first, a generation at a time.

    Compact: 20 bytes an id in one sorted array (searched in one vectorized step per request)
    plus a small dict for the newest generation, ~10 MB for 200,000 ids where a dict of the id
    strings held ~70 MB. Exact all the same: memory only ever answers "duplicate", when both the
    id's hash and the payload hash match (a false match needs two 64-bit hashes to collide at
    once); anything else — an unknown id, a known id with another payload (a conflict, or the
    rare id-hash collision) — goes to the store, where the warehouse's key decides. Only
    committed ids are added, so a hit always means "durably stored"; ids stored without a
    payload hash are not remembered (the store decides for them).
    """

    def __init__(self, capacity: int = RECENT_IDS) -> None:
        self.capacity = max(int(capacity), 1)
        self._size = max(-(-self.capacity // GENERATIONS), 1)
        """Ids per generation: at least ``capacity`` ids are remembered, at most one
        generation more."""
        self._current: dict[int, int] = {}
        """The newest generation, filling: id hash → payload hash."""
        self._keys = np.empty(0, dtype=np.int64)
        """The older generations' id hashes, sorted; their payload hashes and generations."""
        self._digests = np.empty(0, dtype=np.int64)
        self._stamps = np.empty(0, dtype=np.int64)
        self._gens: list[tuple[int, int]] = []
        """``(stamp, ids)`` of each older generation, oldest first (stamps increase)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._current) + len(self._keys)

    def clear(self) -> None:
        """Forget everything (the store decides every id)."""
        with self._lock:
            self._current, self._gens = {}, []
            self._keys = self._digests = self._stamps = np.empty(0, dtype=np.int64)

    def lookup(self, message_id: str) -> tuple[bool, int | None]:
        """``(known, payload hash)`` of one id (known: its hash was stored)."""
        key = hash(message_id)
        with self._lock:
            if key in self._current:
                return True, self._current[key]
            at = int(np.searchsorted(self._keys, key))
            if at < len(self._keys) and self._keys[at] == key:
                return True, int(self._digests[at])
        return False, None

    def duplicates(self, message_ids: Sequence[str], digests: Sequence[int]) -> list[bool]:
        """For each ``(message_id, payload hash)``: ``True`` when that very event is stored."""
        keys = [hash(m) for m in message_ids]
        with self._lock:
            current, stored, payloads = self._current, self._keys, self._digests
            found = [current.get(k) == d for k, d in zip(keys, digests, strict=True)]
        if not len(stored) or all(found):
            return found
        n = len(keys)
        wanted = np.fromiter(keys, dtype=np.int64, count=n)
        at = np.searchsorted(stored, wanted)
        at[at == len(stored)] = 0
        hit = (stored[at] == wanted) & (payloads[at] == np.fromiter(digests, np.int64, n))
        return [a or b for a, b in zip(found, hit.tolist(), strict=True)]

    def add(self, pairs: Sequence[tuple[str, int | None]]) -> None:
        """Remember stored ``(message_id, payload_hash)`` pairs."""
        with self._lock:
            current = self._current
            for message_id, digest in pairs:
                if digest is not None:
                    current[hash(message_id)] = digest
            if len(current) >= self._size:
                stamp = self._gens[-1][0] + 1 if self._gens else 0
                self._gens.append((stamp, len(current)))
                self._current = {}
                self._merge(list(current), list(current.values()), [stamp] * len(current))

    def _merge(self, keys: list[int], digests: list[int], stamps: list[int]) -> None:
        """Add these older generations' ids; forget the oldest generations beyond capacity."""
        total = len(self._current) + len(self._keys) + len(keys)
        while self._gens and total - self._gens[0][1] >= self.capacity:
            total -= self._gens.pop(0)[1]
        oldest = self._gens[0][0] if self._gens else np.iinfo(np.int64).max
        keep = self._stamps >= oldest
        new_stamps = np.array(stamps, dtype=np.int64)
        fresh = new_stamps >= oldest
        all_keys = np.concatenate([self._keys[keep], np.array(keys, dtype=np.int64)[fresh]])
        all_stamps = np.concatenate([self._stamps[keep], new_stamps[fresh]])
        order = np.lexsort((-all_stamps, all_keys))  # by id hash, the newest first
        sorted_keys = all_keys[order]
        newest = np.ones(len(order), dtype=bool)  # one entry per id hash: the newest
        newest[1:] = sorted_keys[1:] != sorted_keys[:-1]
        order = order[newest]
        self._keys = sorted_keys[newest]
        self._digests = np.concatenate(
            [self._digests[keep], np.array(digests, dtype=np.int64)[fresh]]
        )[order]
        self._stamps = all_stamps[order]

    def preload(self, older: Iterable[tuple[str, int | None]]) -> None:
        """Remember pairs stored before this process started (oldest first): they rank older
        than every id added meanwhile, so they are forgotten first."""
        keys: list[int] = []
        digests: list[int] = []
        for message_id, digest in older:
            if digest is not None:
                keys.append(hash(message_id))
                digests.append(digest)
        self._preload(keys, digests)

    def _preload(self, keys: list[int], digests: list[int]) -> None:
        size = self._size
        with self._lock:
            count = -(-len(keys) // size)
            first = (self._gens[0][0] if self._gens else 0) - count
            gens = [(first + g, len(keys[g * size : (g + 1) * size])) for g in range(count)]
            self._gens = gens + self._gens
            self._merge(keys, digests, [first + i // size for i in range(len(keys))])

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
            "AND payload_hash IS NOT NULL "
            f"ORDER BY received_at LIMIT {int(self.capacity)}",
            [*sources, *(cutoff[0] if cutoff else ())],
        )
        keys: list[int] = []
        for chunk in recent.column("message_id").chunks:  # a chunk's strings at a time
            keys += map(hash, chunk.to_pylist())
        self._preload(keys, recent.column("payload_hash").to_pylist())
        return int(recent.num_rows)


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
