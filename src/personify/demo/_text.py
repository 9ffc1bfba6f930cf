"""Vectorized text for the generators: ids, UUIDs, ISO timestamps and JSON, built column-wise.

Nothing here loops over rows: strings are assembled with Arrow compute kernels or from fixed-width
numpy byte matrices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_M64 = (1 << 64) - 1
Piece: TypeAlias = Any
"""An Arrow string array (or chunked array), or a ``str`` repeated on every row."""


def mix64(values: np.ndarray, salt: int) -> np.ndarray:
    """A bijective 64-bit mix (splitmix64's finalizer) of ``values + salt``: distinct in, distinct
    out, random-looking. Used for ids that must be unique and stable for a seed."""
    z = values.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) & _M64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` for integers, ~6× faster: each value's offset from
    the minimum with its index in the low bits is one unique int64 key, sorted by numpy's
    (unstable, vectorized) sort — ties come out in index order, as a stable sort leaves them."""
    n = len(values)
    if n == 0 or not np.issubdtype(values.dtype, np.integer):
        return np.argsort(values, kind="stable")
    low, high = int(values.min()), int(values.max())
    bits = max(n - 1, 1).bit_length()
    if (high - low).bit_length() + bits > 63 or high >= 1 << 63:
        return np.argsort(values, kind="stable")
    keys = ((values.astype(np.int64) - np.int64(low)) << np.int64(bits)) | np.arange(n)
    keys.sort()
    out: np.ndarray = keys & np.int64((1 << bits) - 1)
    return out


def fixed_width(chars: np.ndarray) -> pa.Array:
    """A string array from an ``(n, width)`` matrix of ASCII bytes, one row per string."""
    n, width = chars.shape
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)).cast(
        pa.string()
    )


_HEX2 = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8).view(np.uint16)
"""Two hex digits per byte value, as one uint16 (fast to gather)."""


def _hex_into(out: np.ndarray, start: int, values: np.ndarray, digits: int) -> None:
    """Write the low ``digits`` (even) hex digits of each value into ``out[:, start:]``."""
    n = len(values)
    octets = values.astype(">u8").view(np.uint8).reshape(n, 8)[:, 8 - digits // 2 :]
    pairs = _HEX2.ravel()[octets]
    out[:, start : start + digits] = pairs.view(np.uint8).reshape(n, digits)


def hex_ids(values: np.ndarray, digits: int, prefix: str = "") -> pa.Array:
    """``prefix`` + the low ``digits`` hex digits of each uint64 value."""
    n = len(values)
    head = prefix.encode("ascii")
    out = np.empty((n, len(head) + digits), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    _hex_into(out, len(head), values.astype(np.uint64), digits)
    return fixed_width(out)


def uuids(index: np.ndarray, salt: int) -> pa.Array:
    """Version-4-shaped UUID strings, unique per distinct ``index`` and stable for ``salt``."""
    hi = mix64(index, salt)
    lo = mix64(index, salt + 1)
    n = len(index)
    out = np.empty((n, 36), dtype=np.uint8)
    raw = np.empty((n, 32), dtype=np.uint8)
    _hex_into(raw, 0, hi, 16)
    _hex_into(raw, 16, lo, 16)
    raw[:, 12] = ord("4")
    raw[:, 16] = _HEX[8 + (lo & np.uint64(3)).astype(np.intp)]
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = raw[:, 0:8], raw[:, 8:12], raw[:, 12:16]
    out[:, 19:23], out[:, 24:36] = raw[:, 16:20], raw[:, 20:32]
    out[:, [8, 13, 18, 23]] = ord("-")
    return fixed_width(out)


def timestamps(ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds as an Arrow ``timestamp[ms, UTC]`` array."""
    return pa.array(ms.astype("datetime64[ms]")).cast(pa.timestamp("ms", tz="UTC"))


_PAIRS = np.array([list(f"{i:02d}".encode()) for i in range(100)], np.uint8).view(np.uint16)
"""``_PAIRS[k]``: the two ASCII digits of ``k`` (0–99) as one uint16 (fast to gather)."""


def _put2(out: np.ndarray, col: int, value: np.ndarray) -> None:
    out[:, col : col + 2] = _PAIRS.ravel()[value].view(np.uint8).reshape(len(value), 2)


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day of days since 1970-01-01 (proleptic Gregorian; H. Hinnant's method,
    in int32 arithmetic, which is much faster than int64 here)."""
    z = days.astype(np.int32) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


def iso(ms: np.ndarray, *, millis: bool = True) -> pa.Array:
    """Epoch milliseconds as ISO 8601 UTC strings: ``2024-05-01T10:00:00.123Z`` (or without the
    milliseconds). Fixed width, written two digits at a time into a byte matrix."""
    ms = np.asarray(ms, dtype=np.int64)
    days = ms // 86_400_000
    rest = (ms - days * 86_400_000).astype(np.int32)
    year, month, day = _civil(days)
    seconds = rest // 1000
    out = np.empty((len(ms), 24 if millis else 20), dtype=np.uint8)
    for col, value in (
        (0, year // 100), (2, year % 100), (5, month), (8, day), (11, seconds // 3600),
        (14, seconds // 60 % 60), (17, seconds % 60),
    ):  # fmt: skip
        _put2(out, col, value)
    out[:, [4, 7]], out[:, 10], out[:, [13, 16]] = ord("-"), ord("T"), ord(":")
    if millis:
        out[:, 19] = ord(".")
        frac = rest % 1000
        _put2(out, 20, frac // 10)
        out[:, 22] = 48 + frac % 10
    out[:, -1] = ord("Z")
    return fixed_width(out)


def ints(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(values), pa.string())


def money(values: np.ndarray) -> pa.Array:
    """Amounts rounded to cents, as a float64 Arrow array."""
    return pa.array(np.round(values, 2))


def join(*pieces: Piece) -> pa.Array:
    """Concatenate strings element-wise (literal ``str`` pieces repeat on every row).

    A null in any array piece gives a null row."""
    return pc.binary_join_element_wise(*pieces, "")


def pick(choices: Sequence[str], index: np.ndarray) -> pa.Array:
    """``choices[index]`` for every row."""
    return pa.array(list(choices), pa.string()).take(pa.array(index))


def dictionary(choices: Sequence[str], index: np.ndarray) -> pa.Array:
    """``choices[index]`` as a dictionary-encoded array (no string is copied per row); null where
    ``index`` is negative."""
    values = list(choices)
    if len(set(values)) < len(values):  # a dictionary must not repeat a value (Parquet writers
        unique = list(dict.fromkeys(values))  # then write differing bytes run to run)
        index = np.where(index < 0, -1, np.array([unique.index(v) for v in values])[index])
        values = unique
    mask = index < 0
    indices = pa.array(np.where(mask, 0, index).astype(np.int32), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


@dataclass(frozen=True)
class Lookup:
    """Rows that are values of a (small) array: ``values[index]``. Returned by a
    :func:`by_group` builder, no string is built per row: the final reordering takes the rows
    straight from ``values``."""

    values: pa.Array
    index: np.ndarray


def by_group(
    group: np.ndarray, builders: Sequence[Callable[[np.ndarray], pa.Array | Lookup]]
) -> pa.Array:
    """Row ``i`` built by ``builders[group[i]]``: each builder is called once, with the indexes
    of its rows (ascending), and returns one string per row (nulls allowed) or a :class:`Lookup`;
    results come back in row order. Lets every row be built only the way it needs, with one
    final reordering (a single ``take`` over the builders' strings)."""
    parts: list[pa.Array] = []
    source = np.empty(len(group), np.int64)
    offset = 0
    for g, build in enumerate(builders):
        rows = np.flatnonzero(group == g)
        if not len(rows):
            continue
        built = build(rows)
        if isinstance(built, Lookup):
            values, index = built.values, offset + np.asarray(built.index, np.int64)
        else:
            values, index = built, offset + np.arange(len(rows))
        parts.append(values.cast(pa.string()))
        source[rows] = index
        offset += len(values)
    if not parts:
        return pa.array([], pa.string())
    return pa.concat_arrays(parts).take(pa.array(source))


def scatter(n: int, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """An array of ``n`` nulls with ``values`` at ``rows``."""
    index = np.zeros(n, np.int64)
    index[rows] = np.arange(len(rows))
    mask = np.ones(n, bool)
    mask[rows] = False
    return values.take(pa.array(index, mask=mask))


def where(mask: np.ndarray, then: Piece, otherwise: Piece) -> pa.Array:
    """``then`` where ``mask``, else ``otherwise``."""
    return pc.if_else(pa.array(mask), then, otherwise)


def null_where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """``values`` with nulls where ``mask``."""
    return pc.if_else(pa.array(mask), pa.scalar(None, values.type), values)


# --------------------------------------------------------------------------------------- JSON
def quote(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON string literals (``"…"``) for a string array; nulls stay null."""
    return join('"', _escaped(values), '"')


def _escaped(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The strings with ``\\`` and ``"`` escaped for JSON (most have neither: then as they are)."""
    if _has(values, b"\\") or _has(values, b'"'):
        values = pc.replace_substring(values, "\\", "\\\\")
        values = pc.replace_substring(values, '"', '\\"')
    return values


def _has(values: pa.Array | pa.ChunkedArray, needle: bytes) -> bool:
    """Whether any string holds ``needle`` (a byte search of the whole data buffers: a sliced
    array may answer yes for bytes outside it, which only costs an unneeded escape)."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return bool(pc.any(pc.match_substring(values, needle.decode())).as_py())
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    data = [c.buffers()[2] for c in chunks]
    return any(needle in d.to_pybytes() for d in data if d is not None)


def encode(values: pa.Array) -> pa.Array:
    """JSON text for every value of an Arrow array (struct, list, string, number, bool,
    timestamp); nulls become ``null``. Object keys follow the struct's field order."""
    return pc.fill_null(_encode(values), "null")


def _encode(values: pa.Array) -> pa.Array:
    t = values.type
    if pa.types.is_struct(t):
        pieces: list[Piece] = ["{"]
        for i in range(t.num_fields):
            field = t.field(i)
            pieces += [("," if i else "") + f'"{field.name}":', encode(values.field(i))]
        pieces.append("}")
        return null_where(values.is_null().to_numpy(zero_copy_only=False), join(*pieces))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = encode(values.flatten())
        rebuilt = type(values).from_arrays(values.offsets, inner, mask=values.is_null())
        return join("[", pc.binary_join(rebuilt, ","), "]")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return quote(values)
    if pa.types.is_boolean(t):
        return pc.if_else(values, "true", "false")
    if pa.types.is_timestamp(t):
        ms = pc.fill_null(pc.cast(values, pa.timestamp("ms")).cast(pa.int64()), 0).to_numpy()
        return null_where(values.is_null().to_numpy(zero_copy_only=False), quote(iso(ms)))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(values, pa.string())
    raise TypeError(f"cannot encode {t} as JSON")


def _pieces(values: pa.Array) -> list[Piece]:
    """The JSON text of every value as pieces to :func:`join`: objects and strings without
    nulls are spelled out inline (their members' pieces, the quotes as literals), so a row's
    text is copied once instead of once per level of nesting; anything else as :func:`encode`."""
    t = values.type
    if values.null_count == 0 and pa.types.is_struct(t):
        out: list[Piece] = ["{"]
        for i in range(t.num_fields):
            out += [("," if i else "") + f'"{t.field(i).name}":', *_pieces(values.field(i))]
        return [*out, "}"]
    if values.null_count == 0 and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return ['"', _escaped(values), '"']
    return [encode(values)]


def _merged(pieces: list[Piece]) -> list[Piece]:
    """Adjacent literal pieces as one."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] += piece
        else:
            out.append(piece)
    return out


def json_lines(table: pa.Table) -> pa.Array:
    """One JSON object per row, each ending in a newline (columns in table order)."""
    rows = pa.StructArray.from_arrays(
        [c.combine_chunks() for c in table.columns], names=table.column_names
    )
    return join(*_merged([*_pieces(rows), "\n"]))
