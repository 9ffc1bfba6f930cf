"""A Bloom filter of a keyless table's stored keys, so most loads skip the probe of stored keys.

Without a key index, :func:`~personify.warehouse.duckdb.keyless.load` keeps a key unique by an
anti-join that reads the table's whole key column — once per load, so a stream of small loads (the
tracking API's group commits: ~1,000 events each) costs more the more the table holds (measured:
~14 ms per 1,000-event load into an empty ``events``, ~180 ms at 1 M stored, ~900 ms at 5 M). A
:class:`KeyFilter` answers "certainly not stored" for nearly every new key from memory; only the
keys it cannot rule out (a resend, or a false positive: about one key in 100,000) go through the
anti-join.

It is built under the table's write lock, the first time a table of :data:`FILTERED` is loaded in
this process (one scan of the key column), and every later load adds its keys — before its commit:
a rolled-back load leaves bits set for keys not stored, which only costs a needless probe. Deleted
rows stay in it the same way. Every writer of a filtered table must go through ``load()`` (they
do: the table has no engine key, so only ``load()`` keeps it unique anyway). The hash is Python's
string hash: the filter lives and dies with the process, so its per-process seed does not matter.
When the table outgrows the filter's capacity, it is rebuilt twice as large.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import pyarrow as pa

FILTERED: Final = frozenset({"events"})
"""Tables (single text key, written in many small loads) that keep a :class:`KeyFilter`."""
HASHES: Final = 16
"""Bit positions per key."""
BITS_PER_KEY: Final = 24
"""Filter size per key of capacity: with :data:`HASHES`, about 1e-5 false positives."""
MIN_CAPACITY: Final = 1 << 20


def key_hashes(keys: Sequence[object]) -> np.ndarray:
    """64-bit hashes of the keys (as unsigned integers)."""
    return np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys)).view(np.uint64)


class KeyFilter:
    """A Bloom filter over 64-bit key hashes (double hashing, :data:`HASHES` positions)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, MIN_CAPACITY)
        self.size = self.capacity * BITS_PER_KEY
        self.bits = np.zeros((self.size + 7) // 8, dtype=np.uint8)
        self.count = 0
        """Keys added (with repeats): when over ``capacity``, the filter is rebuilt larger."""

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        low = hashes & np.uint64(0xFFFFFFFF)
        high = (hashes >> np.uint64(32)) | np.uint64(1)
        steps = np.arange(HASHES, dtype=np.uint64)
        return (low[:, None] + steps[None, :] * high[:, None]) % np.uint64(self.size)

    def add(self, hashes: np.ndarray) -> None:
        positions = self._positions(hashes).ravel()
        np.bitwise_or.at(
            self.bits, positions >> np.uint64(3), (1 << (positions & np.uint64(7))).astype(np.uint8)
        )
        self.count += len(hashes)

    def might_contain(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: ``False`` when the key is certainly not stored."""
        positions = self._positions(hashes)
        found = self.bits[positions >> np.uint64(3)] & (1 << (positions & np.uint64(7)))
        result: np.ndarray = found.astype(bool).all(axis=1)
        return result

    @property
    def full(self) -> bool:
        return self.count > self.capacity


def build(stored: Callable[[], pa.ChunkedArray], rows: int) -> KeyFilter:
    """A filter holding every stored key (``stored()`` reads the key column), sized for twice
    the ``rows`` stored."""
    keys = stored()
    found = KeyFilter(2 * max(rows, len(keys)))
    for start in range(0, len(keys), 1 << 20):
        found.add(key_hashes(keys.slice(start, 1 << 20).to_pylist()))
    return found
