"""Source schedules and run records: when each source syncs next, what its last run did.

A source's ``schedule:`` is ``every: 15m`` (runs start that long apart) or ``cron: "*/15 * * *
*"`` (UTC). :func:`next_run` says when the next run is due after a given run started.

Every sync of a source — by ``personify sync``, ``personify run`` or the server's scheduler —
holds the source's lock (:func:`source_lock`), so one source never has two runs at once in a
process (the server runs forwarded commands in-process), and is recorded by :func:`record_run`
in ``source_state`` (resource ``*``): start, seconds, rows, outcome and the error if it failed.
:func:`last_runs` reads them back for ``personify status``.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from personify import clock
from personify.config import Schedule, duration_seconds
from personify.privacy.masking import mask_text
from personify.warehouse import Warehouse
from personify.warehouse.schema import SOURCE_STATE

RUN_RESOURCE: Final = "*"
"""The ``source_state.resource`` holding a source's last run."""

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def next_run(schedule: Schedule, last_start: datetime | None, now: datetime) -> datetime:
    """When the next run is due: ``every`` after the last start (now when there was none or it
    is overdue by more than one interval), or the cron's next instant after the last start."""
    if schedule.every is not None:
        interval = timedelta(seconds=duration_seconds(schedule.every))
        if last_start is None:
            return now
        due = last_start + interval
        return due if due >= now - interval else now
    from croniter import croniter

    base = last_start or now
    nxt: datetime = croniter(schedule.cron, base).get_next(datetime)
    return nxt


def source_lock(name: str) -> threading.Lock:
    """The lock one source's runs hold (per process)."""
    with _guard:
        return _locks.setdefault(name, threading.Lock())


def advisory_key(name: str, schema: str) -> int:
    """The PostgreSQL advisory-lock key of a source's runs: a signed 64-bit hash of the
    project's schema and the source's name. Advisory locks are shared by the whole database, so
    the schema keeps two projects on one database (each in its own schema) from serialising
    their same-named sources."""
    digest = hashlib.sha256(f"personify-source:{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def exclusive(
    name: str, *, wait: bool = True, warehouse: Warehouse | None = None
) -> Iterator[bool]:
    """Hold ``name``'s lock for the block; yields ``False`` (without it) when ``wait`` is false
    and another run holds it. With a ``warehouse`` that has advisory locks (PostgreSQL), the
    lock is also taken there, so runs in other processes (a ``personify sync`` beside a
    ``personify serve``) wait too."""
    lock = source_lock(name)
    if not lock.acquire(blocking=wait):
        yield False
        return
    try:
        if warehouse is None or not warehouse.capabilities.advisory_lock:
            yield True
            return
        key = advisory_key(name, str(warehouse.scalar("SELECT current_schema()")))
        if wait:
            warehouse.scalar(f"SELECT pg_advisory_lock({key})")
        elif not warehouse.scalar(f"SELECT pg_try_advisory_lock({key})"):
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):  # (a lost connection released it already)
                warehouse.scalar(f"SELECT pg_advisory_unlock({key})")
    finally:
        lock.release()


class LastRun(msgspec.Struct):
    started_at: str
    seconds: float
    status: str
    """``succeeded`` or ``failed``."""
    rows: int = 0
    counts: dict[str, int] = {}
    error: str | None = None
    trigger: str = "manual"
    """``manual`` (sync, run) or ``schedule``."""


def record_run(
    wh: Warehouse,
    source: str,
    *,
    started_at: datetime,
    seconds: float,
    counts: dict[str, int],
    error: str | None,
    trigger: str = "manual",
) -> None:
    """Record a source's run (its own small transaction)."""
    import pyarrow as pa

    run = LastRun(
        started_at=started_at.isoformat(),
        seconds=round(seconds, 3),
        status="failed" if error else "succeeded",
        rows=counts.get("rows_loaded", 0) + counts.get("rows_duplicate", 0),
        counts=counts,
        error=mask_text(error)[:500] if error else None,  # (an API may echo an address)
        trigger=trigger,
    )
    now = clock.now()
    ts = pa.timestamp("us", tz="UTC")
    table = pa.table(
        {
            "source": pa.array([source]),
            "resource": pa.array([RUN_RESOURCE]),
            "state": pa.array([msgspec.json.encode(run).decode()]),
            "last_sync_at": pa.array([started_at if not error else None], ts),
            "updated_at": pa.array([now], ts),
        }
    )
    update = ["state", "updated_at"] + ([] if error else ["last_sync_at"])
    wh.load(SOURCE_STATE, table, on_conflict="update", update_columns=update)


def last_runs(wh: Warehouse) -> dict[str, LastRun]:
    """Each source's last recorded run."""
    rows = wh.fetch(
        f"SELECT source, CAST(state AS VARCHAR) FROM {SOURCE_STATE.name} WHERE resource = ?",
        [RUN_RESOURCE],
    )
    out: dict[str, LastRun] = {}
    for source, raw in rows:
        with contextlib.suppress(msgspec.DecodeError, TypeError):
            out[str(source)] = msgspec.json.decode(raw, type=LastRun)
    return out


def run_summary(
    runs: dict[str, LastRun], name: str, schedule: Schedule | None, now: datetime
) -> dict[str, Any]:
    """The ``personify status`` fields of one source's runs."""
    run = runs.get(name)
    out: dict[str, Any] = {
        "last_run_at": run.started_at if run else None,
        "last_run_status": run.status if run else None,
        "last_run_seconds": run.seconds if run else None,
        "last_run_rows": run.rows if run else None,
        "last_error": run.error if run else None,
        "schedule": None,
        "next_run_at": None,
    }
    if schedule is not None:
        out["schedule"] = f"every {schedule.every}" if schedule.every else f"cron {schedule.cron}"
        started = clock.parse_instant(run.started_at) if run else None
        out["next_run_at"] = next_run(schedule, started, now).isoformat()
    return out
