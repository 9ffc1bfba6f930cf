"""Duplicate primary keys within one input (a file read in batches).

:class:`KeySet` remembers the keys of the rows kept so far and flags later rows with a key already
kept. Within a batch the comparison is exact (the rows' key values); across batches it compares
64-bit hashes of the keys, held as one sorted NumPy array — 8 bytes per key, so a 10-million-row
file needs 80 MB, and looking a batch up is a binary search. Two distinct keys share a hash with
probability about n²/2⁶⁵ (3 in a million for a 10-million-row file); the later row would then be
quarantined as a duplicate — visible, with its payload, never silently lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from personify.ingest.engine import arrow, registered
from personify.warehouse.base import quote

_KEYS = "__dedup_keys"


class Seen(NamedTuple):
    """What :meth:`KeySet.duplicates` found in a batch."""

    duplicate: np.ndarray[Any, np.dtype[np.bool_]]
    """Per row: its key was taken already."""
    kept_hashes: np.ndarray[Any, np.dtype[np.uint64]] | None
    """The DuckDB ``hash()`` of the kept rows' keys, in their order, when the key is one column
    and no two of them are equal — then no two of them are equal in the whole input either
    (a later row whose hash was kept is a duplicate): a loader may use them as the keys'
    hashes (:meth:`~personify.warehouse.base.Warehouse.load`). ``None`` otherwise."""


class KeySet:
    """The keys kept so far in one input."""

    def __init__(self, con: duckdb.DuckDBPyConnection, key: Sequence[str]) -> None:
        self.con = con
        self.key = list(key)
        self.hashes: np.ndarray[Any, np.dtype[np.uint64]] = np.empty(0, dtype=np.uint64)

    def duplicates(self, rows: pa.Table) -> Seen:
        """For each row of ``rows`` (the key columns and ``__pos``, the row's position in the
        input, ascending): is its key taken already — by an earlier row of ``rows`` or of an
        earlier call? The first row with a key is kept."""
        n = rows.num_rows
        if not n:
            return Seen(np.zeros(0, dtype=np.bool_), np.empty(0, dtype=np.uint64))
        cols = ", ".join(quote(c) for c in self.key)
        with registered(self.con, rows.select([*self.key, "__pos"]), _KEYS):
            h = arrow(self.con, f"SELECT hash({cols}) AS h FROM {_KEYS}").column("h")
            hashes = h.to_numpy().astype(np.uint64, copy=False)
            order = np.argsort(hashes)  # any order: a repeat only triggers the exact check
            ordered = hashes[order]
            dup = self._within(order, ordered)
        dup |= self._seen(order, ordered)
        kept = hashes[~dup]
        added = np.sort(kept)
        self._add(added)
        # (two kept rows share a hash only when their keys differ: the exact check kept both)
        distinct = not bool((added[1:] == added[:-1]).any())
        return Seen(dup, kept if len(self.key) == 1 and distinct else None)

    def _within(
        self, order: np.ndarray[Any, Any], ordered: np.ndarray[Any, np.dtype[np.uint64]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        repeat = np.zeros(len(order), dtype=np.bool_)
        repeat[order[1:]] = ordered[1:] == ordered[:-1]
        if not repeat.any():
            return repeat
        # A repeated hash: compare the key values themselves (exact).
        cols = ", ".join(quote(c) for c in self.key)
        ranked = arrow(
            self.con,
            f"SELECT row_number() OVER (PARTITION BY {cols} ORDER BY __pos) > 1 AS d "
            f"FROM {_KEYS} ORDER BY __pos",
        )
        exact: np.ndarray[Any, np.dtype[np.bool_]] = (
            ranked.column("d").to_numpy(zero_copy_only=False).astype(np.bool_)
        )
        return exact

    def _seen(
        self, order: np.ndarray[Any, Any], ordered: np.ndarray[Any, np.dtype[np.uint64]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        found = np.zeros(len(order), dtype=np.bool_)
        if len(self.hashes):
            # sorted look-ups: binary searches walk the array in order (cache friendly)
            at = np.minimum(np.searchsorted(self.hashes, ordered), len(self.hashes) - 1)
            found[order] = self.hashes[at] == ordered
        return found

    def _add(self, new: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
        self.hashes = np.insert(self.hashes, np.searchsorted(self.hashes, new), new)
