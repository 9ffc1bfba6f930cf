"""A Bloom filter of a keyless table's stored keys, so most loads skip the probe of stored keys.

Without a key index, :func:`~personify.warehouse.duckdb.keyless.load` keeps a key unique by an
anti-join that reads the table's whole key column — once per load, so a stream of small loads (the
tracking API's group commits: ~1,000 events each) costs more the more the table holds (measured:
~14 ms CPU per 1,000-event load into a small ``events``, ~53 ms at 1 M stored, ~220 ms at 5 M). A
:class:`KeyFilter` answers "certainly not stored" for nearly every new key from memory; only the
keys it cannot rule out (a resend, or a false positive: a few keys in 100,000) go through the
anti-join.

It is built under the table's write lock, the first time a table of :data:`FILTERED` is loaded in
this process (one scan of the key column), and every later load adds its keys — before its commit:
a rolled-back load leaves bits set for keys not stored, which only costs a needless probe. Deleted
rows stay in it the same way. Every writer of a filtered table must go through ``load()`` (they
do: the table has no engine key, so only ``load()`` keeps it unique anyway). When the table
outgrows the filter's capacity, it is rebuilt larger.

The filter is *blocked*: a key sets :data:`HASHES` bits in two 64-bit words, so adding or testing
keys is a few vectorized numpy operations. Building it streams the stored keys (never all in
memory at once): a few seconds for ten million.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa

from personify.warehouse.base import quote

FILTERED: Final = frozenset({"events"})
"""Tables (single text key, written in many small loads) that keep a :class:`KeyFilter`."""
HASHES: Final = 10
"""Bits set per key: half in each of its two words."""
BITS_PER_KEY: Final = 48
"""Filter size per key of capacity: about one false positive in a million keys at two thirds
full, seven when full (measured)."""
MIN_CAPACITY: Final = 1 << 20
CHUNK: Final = 1 << 16
"""Keys hashed at once."""
GROWTH: Final = 1.5
"""A filter is (re)built for this many times the keys stored."""
_MIX: Final = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))


_ONE, _63, _32 = np.uint64(1), np.uint64(63), np.uint64(32)


def _mask(mixed: np.ndarray, first: int) -> np.ndarray:
    """The :data:`HASHES` / 2 bits of a word that six-bit fields of ``mixed`` name (in place: a
    million keys' masks in ~15 ms instead of ~40)."""
    mask = _ONE << ((mixed >> np.uint64(first)) & _63)
    bit = np.empty_like(mask)
    for i in range(1, HASHES // 2):
        np.right_shift(mixed, np.uint64(first + 6 * i), out=bit)
        np.bitwise_and(bit, _63, out=bit)
        np.left_shift(_ONE, bit, out=bit)
        mask |= bit
    return mask


def _word(high: np.ndarray, n: np.uint64) -> np.ndarray:
    """A word index in ``[0, n)`` from the top 32 bits of ``high`` (multiply and shift: no
    64-bit division)."""
    if int(n) >= 1 << 32:  # (over 4 billion words: the plain remainder)
        return high % n
    return ((high >> _32) * n) >> _32


def hash_sql(key: str, relation: str) -> str:
    """The query giving the 64-bit hashes of the column ``key`` of ``relation`` (an already
    quoted name), in its rows' order: DuckDB's own ``hash()``, the same for a batch about to be
    loaded and for the stored keys. Python's ``hash`` over ``to_pylist()`` cost ~0.5 µs per key
    against ~0.06 (2 M web-event ids, busy machine) — ~3 CPU-s of the 1 M world's load; a small
    load (the tracking API's ~1,000 events) pays one more statement, well under a millisecond."""
    return f"SELECT hash({quote(key)}) AS h FROM {relation}"


def as_hashes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The ``UBIGINT`` hashes :func:`hash_sql` returns, as one ``uint64`` array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if len(column) == 0:
        return np.empty(0, dtype=np.uint64)
    hashes: np.ndarray = column.to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)
    return hashes


class KeyFilter:
    """A blocked Bloom filter over 64-bit key hashes: each key sets a few bits in two words."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(int(capacity), MIN_CAPACITY)
        self.words = np.zeros(self.capacity * BITS_PER_KEY // 64, dtype=np.uint64)
        self.count = 0
        """Keys added (with repeats): when over ``capacity``, the filter is rebuilt larger."""

    def _slots(self, hashes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each hash's two words and the masks of its bits in them."""
        h = hashes.astype(np.uint64, copy=False)
        n = np.uint64(len(self.words))
        scrambled = h * _MIX[0]  # wraps: fresh bits for the second word and the positions
        bits = h * _MIX[1]
        return [(_word(h, n), _mask(bits, 4)), (_word(scrambled, n), _mask(bits, 34))]

    def add(self, hashes: np.ndarray) -> None:
        self._set(self._slots(hashes))
        self.count += len(hashes)

    def test_and_add(self, hashes: np.ndarray) -> np.ndarray:
        """:meth:`might_contain` (before adding), then :meth:`add` — the hashes' words and
        masks computed once for both."""
        slots = self._slots(hashes)
        result = self._test(slots)
        self._set(slots)
        self.count += len(hashes)
        return result

    def _set(self, slots: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for index, mask in slots:
            np.bitwise_or.at(self.words, index, mask)

    def _test(self, slots: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        result = np.ones(len(slots[0][0]), dtype=bool)
        for index, mask in slots:
            result &= (self.words[index] & mask) == mask
        return result

    def might_contain(self, hashes: np.ndarray) -> np.ndarray:
        """Per hash: ``False`` when the key is certainly not stored."""
        return self._test(self._slots(hashes))

    @property
    def full(self) -> bool:
        return self.count > self.capacity
