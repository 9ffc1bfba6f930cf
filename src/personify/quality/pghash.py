"""PostgreSQL's own hash functions, bit for bit, over Arrow columns (numpy): a row hash that
PostgreSQL computes for the price of a few function calls and the warehouse reproduces exactly.

PostgreSQL hashes every type for its hash indexes with Bob Jenkins' lookup3
(``src/common/hashfn.c``, ``hash_bytes_extended``: 64 bits, seeded). The SQL functions
``hashtextextended``, ``hashint4extended``, ``hashint8extended``, ``hashfloat8extended`` and
``timestamp_hash_extended`` are ~0.2 µs a call — ten times cheaper than ``md5()`` of a canonical
text, which also needs every number and instant spelled as text first. The warehouse side is
this module: the same arithmetic on whole columns at once.

A row's hash (:func:`row_hash_pg_sql` in PostgreSQL, :func:`row_hash_arrow` here) is the XOR of
its columns' hashes, column *i* hashed with seed ``i + 1`` (so equal values in two columns, or two
values swapped, do not cancel), a NULL hashing to 0. A changed field changes its column's hash
(bar a 2⁻⁶⁴ collision) and so the row's.

Per stored type (PostgreSQL ← the value cast to the stored type; here ← the Arrow column):

===========  ======================================================  ==========================
type         PostgreSQL                                              what is hashed
===========  ======================================================  ==========================
VARCHAR      ``hashtextextended(v, s)``                              the UTF-8 bytes
BIGINT       ``hashint8extended(v, s)``                              the integer
INTEGER      ``hashint4extended(v, s)``                              the integer
BOOLEAN      ``hashint4extended(v::int, s)``                         0 or 1
DOUBLE       ``hashfloat8extended(v, s)``                            the IEEE bits (±0 → seed;
                                                                     NaN → one NaN)
TIMESTAMPTZ  ``timestamp_hash_extended(v::timestamp, s)``, session   µs since 2000-01-01 UTC
             ``TimeZone`` UTC (:data:`SESSION`)
TIMESTAMP    ``timestamp_hash_extended(v, s)``                       µs since 2000-01-01
===========  ======================================================  ==========================

Other types are hashed as their text (``v::text`` / Arrow's cast to string): where the engines
spell a value differently the hashes differ and the field-by-field comparison settles it — a
false alarm costs one fetched row, never a missed difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from personify.warehouse.base import quote
from personify.warehouse.schema import Column

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]

GOLDEN: Final = 0x9E3779B9 + 3923095
"""lookup3's initial state, less the key's length (``0x9e3779b9 + len + 3923095``)."""
PG_EPOCH_US: Final = 946_684_800_000_000
"""PostgreSQL counts instants from 2000-01-01; Arrow from 1970-01-01."""
SESSION: Final = "SET TimeZone = 'UTC'"
"""Run on the PostgreSQL connection first: ``timestamptz::timestamp`` is then the instant itself
(in a zone with daylight saving, two instants an hour apart would share a local time)."""
_CANONICAL_NAN: Final = 0x7FF8000000000000


def _rot(x: U32, k: int) -> U32:
    return (x << np.uint32(k)) | (x >> np.uint32(32 - k))


def _mix(a: U32, b: U32, c: U32) -> None:
    a -= c
    a ^= _rot(c, 4)
    c += b
    b -= a
    b ^= _rot(a, 6)
    a += c
    c -= b
    c ^= _rot(b, 8)
    b += a
    a -= c
    a ^= _rot(c, 16)
    c += b
    b -= a
    b ^= _rot(a, 19)
    a += c
    c -= b
    c ^= _rot(b, 4)
    b += a


def _final(a: U32, b: U32, c: U32) -> None:
    c ^= b
    c -= _rot(b, 14)
    a ^= c
    a -= _rot(c, 11)
    b ^= a
    b -= _rot(a, 25)
    c ^= b
    c -= _rot(b, 16)
    a ^= c
    a -= _rot(c, 4)
    b ^= a
    b -= _rot(a, 14)
    c ^= b
    c -= _rot(b, 24)


def _start(lengths: npt.NDArray[np.int64], seed: int) -> tuple[U32, U32, U32]:
    a = lengths.astype(np.uint32)
    a += np.uint32(GOLDEN & 0xFFFFFFFF)
    b = a.copy()
    c = a.copy()
    if seed:
        a += np.uint32((seed >> 32) & 0xFFFFFFFF)
        b += np.uint32(seed & 0xFFFFFFFF)
        _mix(a, b, c)
    return a, b, c


def _result(b: U32, c: U32) -> U64:
    return (b.astype(np.uint64) << np.uint64(32)) | c.astype(np.uint64)


def hash_uint32(values: U32, seed: int) -> U64:
    """``hash_bytes_uint32_extended``: one 32-bit word per row."""
    a, b, c = _start(np.full(len(values), 4, np.int64), seed)
    a += values
    _final(a, b, c)
    return _result(b, c)


def _windows(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Every 12-byte window of ``data`` (a view: row ``i`` is ``data[i:i + 12]``, zeros past
    the end), so that one fancy index gathers a block of three words for many keys at once."""
    padded = np.concatenate([data, np.zeros(12, np.uint8)])
    return np.lib.stride_tricks.as_strided(padded, (len(data) + 1, 12), (1, 1), writeable=False)


_TAIL_MASKS: Final = np.array(
    [[(1 << 8 * max(0, min(4, n - w))) - 1 for w in (0, 4, 8)] for n in range(12)], np.uint32
)
"""Per tail length (0–11): the masks keeping its bytes in each of the window's three words."""


def hash_bytes(data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], seed: int) -> U64:
    """``hash_bytes_extended`` of each slice ``data[offsets[i]:offsets[i + 1]]``."""
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    windows = _windows(data)
    a, b, c = _start(lengths, seed)
    blocks = lengths // 12
    for i in range(int(blocks.max(initial=0))):  # whole 12-byte blocks: a, b, c += 3 words
        if bool((blocks > i).all()):
            words = np.ascontiguousarray(windows[starts + 12 * i]).view("<u4")
            a += words[:, 0]
            b += words[:, 1]
            c += words[:, 2]
            _mix(a, b, c)
            continue
        rows = np.flatnonzero(blocks > i)
        words = np.ascontiguousarray(windows[starts[rows] + 12 * i]).view("<u4")
        ra, rb, rc = a[rows], b[rows], c[rows]
        ra += words[:, 0]
        rb += words[:, 1]
        rc += words[:, 2]
        _mix(ra, rb, rc)
        a[rows], b[rows], c[rows] = ra, rb, rc
    # the last 0–11 bytes: a ← bytes 0–3, b ← 4–7, c ← 8–10 from its bit 8 (lookup3's tail)
    left = lengths - 12 * blocks
    words = np.ascontiguousarray(windows[starts + 12 * blocks]).view("<u4")
    words &= _TAIL_MASKS[left]
    a += words[:, 0]
    b += words[:, 1]
    c += words[:, 2] << np.uint32(8)
    _final(a, b, c)
    return _result(b, c)


def hash_text(values: pa.Array, seed: int) -> U64:
    """``hashtextextended`` of each (non-null) string; nulls hash to anything (masked later)."""
    arr = pc.cast(values, pa.large_string())
    _, offsets_buf, data_buf = arr.buffers()
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(offsets_buf, np.int64, len(arr) + 1, arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return hash_bytes(data, offsets, seed)


def hash_int8(values: npt.NDArray[np.int64], seed: int) -> U64:
    """``hashint8extended``: the low word, XOR the high word (its complement when negative)."""
    lo = (values & 0xFFFFFFFF).astype(np.uint32)
    hi = ((values >> 32) & 0xFFFFFFFF).astype(np.uint32)
    lo ^= np.where(values >= 0, hi, ~hi)
    return hash_uint32(lo, seed)


def hash_float8(values: npt.NDArray[np.float64], seed: int) -> U64:
    """``hashfloat8extended``: ±0 hash to the seed; every NaN as one NaN; else the 8 bytes."""
    bits = np.ascontiguousarray(values).view(np.uint64).copy()
    bits[np.isnan(values)] = _CANONICAL_NAN
    words = bits.view("<u4").reshape(-1, 2)
    a, b, c = _start(np.full(len(values), 8, np.int64), seed)
    a += words[:, 0]  # eight bytes: no whole block; the tail's a ← bytes 0–3, b ← 4–7
    b += words[:, 1]
    _final(a, b, c)
    out = _result(b, c)
    out[values == 0] = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    return out


def _column_hash(column: Column, values: pa.Array, seed: int) -> U64:
    kind = column.type
    if kind in ("TIMESTAMPTZ", "TIMESTAMP"):
        us = pc.cast(values, pa.timestamp("us", tz="UTC" if kind == "TIMESTAMPTZ" else None))
        ints = pc.fill_null(us.view(pa.int64()), 0).to_numpy(zero_copy_only=False)
        return hash_int8(ints - PG_EPOCH_US, seed)
    if kind == "BIGINT":
        ints = pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy(zero_copy_only=False)
        return hash_int8(ints, seed)
    if kind in ("INTEGER", "BOOLEAN"):
        ints = pc.fill_null(pc.cast(values, pa.int32()), 0).to_numpy(zero_copy_only=False)
        return hash_uint32(ints.astype(np.int32).view(np.uint32), seed)
    if kind == "DOUBLE":
        floats = pc.fill_null(pc.cast(values, pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        return hash_float8(floats, seed)
    return hash_text(pc.cast(values, pa.string()), seed)


def row_hash_arrow(columns: Sequence[Column], rows: pa.Table) -> pa.Array:
    """The row hash (module docstring) of ``rows`` (holding ``columns``, by name) as ``int64``,
    equal to :func:`row_hash_pg_sql` of the same values in PostgreSQL."""
    out = np.zeros(rows.num_rows, np.uint64)
    for i, column in enumerate(columns):
        values = rows.column(column.name).combine_chunks()
        h = _column_hash(column, values, i + 1)
        if values.null_count:
            h[np.asarray(values.is_null())] = 0
        out ^= h
    return pa.array(out.view(np.int64), pa.int64())


_PG_HASH: Final = {
    "VARCHAR": "hashtextextended({c}, {s})",
    "BIGINT": "hashint8extended({c}, {s})",
    "INTEGER": "hashint4extended({c}, {s})",
    "BOOLEAN": "hashint4extended(({c})::int, {s})",
    "DOUBLE": "hashfloat8extended({c}, {s})",
    "TIMESTAMPTZ": "timestamp_hash_extended(({c})::timestamp, {s})",
    "TIMESTAMP": "timestamp_hash_extended({c}, {s})",
}


def row_hash_pg_sql(columns: Sequence[Column], alias: str = "") -> str:
    """PostgreSQL SQL of the row hash of ``columns`` (read from ``alias``, already of the
    stored types; the session's ``TimeZone`` UTC: :data:`SESSION`)."""
    prefix = f"{alias}." if alias else ""
    pieces = []
    for i, column in enumerate(columns):
        ref = f"{prefix}{quote(column.name)}"
        template = _PG_HASH.get(column.type, "hashtextextended(({c})::text, {s})")
        pieces.append(f"coalesce({template.format(c=ref, s=i + 1)}, 0)")
    return " # ".join(pieces) if pieces else "0::bigint"
