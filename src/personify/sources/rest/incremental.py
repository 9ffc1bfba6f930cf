"""Incremental state: where the next sync starts, saved in ``source_state`` with the rows.

A resource's state (``source_state``, one row per source and resource, JSON)::

    {"cursor": <the largest cursor value stored by a finished sync>,
     "run": {"start": <start value sent>, "next": <PageRequest of the next page>,
             "max": <largest cursor value seen so far>} | null}

The sync writes every page's rows, its quarantined records and this state in ONE transaction.
While a sync runs, ``run`` says which page comes next; a sync that was interrupted (killed,
failed) resumes there — the pages stored are not fetched again, none is skipped. When the last
page is stored, ``cursor`` becomes the largest value seen and ``run`` is cleared: the next sync
asks for records changed since ``cursor - overlap``. Records come back in the overlap; they are
upserted by key, so nothing is doubled.

Cursor values are compared as instants (ISO 8601 text, or numbers of epoch seconds — or
milliseconds when ``start_format: unix_ms``), or as text when they are neither.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa

from personify import clock
from personify.config import Incremental, duration_seconds
from personify.sources.rest.paginators import PageRequest
from personify.warehouse import Warehouse
from personify.warehouse.schema import SOURCE_STATE


class Run(msgspec.Struct):
    """A sync in progress."""

    start: Any = None
    next: PageRequest | None = None
    max: Any = None


class ResourceState(msgspec.Struct):
    cursor: Any = None
    run: Run | None = None


def load_state(wh: Warehouse, source: str, resource: str) -> ResourceState:
    raw = wh.scalar(
        f"SELECT CAST(state AS VARCHAR) FROM {SOURCE_STATE.name} WHERE source = ? AND resource = ?",
        [source, resource],
    )
    if not raw:
        return ResourceState()
    try:
        return msgspec.json.decode(raw, type=ResourceState)
    except msgspec.DecodeError:
        return ResourceState()  # written by an older version: start afresh (upserts: no doubles)


def save_state(
    wh: Warehouse, source: str, resource: str, state: ResourceState, *, finished: bool
) -> None:
    """Write the state (inside the caller's transaction, with the page's rows)."""
    now = clock.now()
    row: dict[str, Any] = {
        "source": [source],
        "resource": [resource],
        "state": [msgspec.json.encode(state).decode()],
        "updated_at": [now],
    }
    update = ["state", "updated_at"]
    if finished:
        row["last_sync_at"] = [now]
        update.append("last_sync_at")
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([pa.field(n, ts if n.endswith("_at") else pa.string()) for n in row])
    table = pa.table(row).cast(schema)
    wh.load(SOURCE_STATE, table, on_conflict="update", update_columns=update)


# ------------------------------------------------------------------------------------ values
def as_instant(value: Any, fmt: str = "auto") -> datetime | None:
    """A cursor value as an instant, when it is one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if fmt == "unix_ms" else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            return clock.parse_instant(value)
        except ValueError:
            if value.strip().lstrip("-").isdigit():
                return as_instant(int(value), fmt)
    return None


def later(a: Any, b: Any, fmt: str = "auto") -> Any:
    """The larger of two cursor values (``None`` is smallest)."""
    if a is None:
        return b
    if b is None:
        return a
    ia, ib = as_instant(a, fmt), as_instant(b, fmt)
    if ia is not None and ib is not None:
        return b if ib > ia else a
    if ia is not None or ib is not None:  # an instant beats a broken value
        return a if ia is not None else b
    return b if str(b) > str(a) else a


def start_value(inc: Incremental, cursor: Any, initial: Any = None) -> Any:
    """The value sent as the start of this sync: the last cursor (or the initial value) minus
    the overlap, formatted as ``start_format`` says."""
    value = cursor if cursor is not None else (inc.initial_value or initial)
    if value is None:
        return None
    instant = as_instant(value, inc.start_format)
    fmt = inc.start_format
    if fmt == "auto":
        fmt = "unix" if isinstance(value, int | float) else "iso"
    if instant is None:
        return value
    instant -= timedelta(seconds=duration_seconds(inc.overlap))
    if fmt == "unix":
        return int(instant.timestamp())
    if fmt == "unix_ms":
        return int(instant.timestamp() * 1000)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def substitute(value: Any, start: Any) -> Any:
    """``{incremental.start_value}`` replaced in strings of ``value`` (params, JSON bodies)."""
    if isinstance(value, str):
        if value == "{incremental.start_value}":
            return start
        return value.replace("{incremental.start_value}", "" if start is None else str(start))
    if isinstance(value, dict):
        return {k: substitute(v, start) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, start) for v in value]
    return value
