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
from personify.errors import ServiceUnavailable, WarehouseError
from personify.privacy.masking import mask_text
from personify.warehouse import Warehouse
from personify.warehouse.schema import SOURCE_STATE

RUN_RESOURCE: Final = "*"
"""The ``source_state.resource`` holding a source's last run."""

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_held: dict[str, tuple[Warehouse, int, int]] = {}
"""Source name → the warehouse, advisory key and server session (``pg_backend_pid()``) of the
PostgreSQL lock its run in this process holds (:func:`exclusive`, :func:`still_held`)."""
_HELD_SQL: Final = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = ? AND granted "
    "AND objsubid = 1 AND ((CAST(classid AS BIGINT) << 32) | CAST(objid AS BIGINT)) = ?"
)


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
    ``personify serve``) wait too.

    That lock belongs to the server session (the connection) that took it: when the connection
    drops — a server restart, a network cut, an idle timeout, ``pg_terminate_backend`` — the
    server releases it, and the warehouse's next statement runs on a new connection that does
    not hold it (another process may have taken it since). So the sync checks it still holds
    it (:func:`still_held`) inside each transaction that commits where the source's next sync
    starts, and fails there instead of committing beside another run."""
    lock = source_lock(name)
    if not lock.acquire(blocking=wait):
        yield False
        return
    try:
        if warehouse is None or not warehouse.capabilities.advisory_lock:
            yield True
            return
        key = advisory_key(name, str(warehouse.scalar("SELECT current_schema()")))
        take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        # (one statement: the session that took it is the one asked)
        row = warehouse.fetch(f"SELECT {take}({key}), pg_backend_pid()")[0]
        if not wait and not row[0]:
            yield False
            return
        with _guard:
            _held[name] = (warehouse, key, int(row[1]))
        try:
            yield True
        finally:
            with _guard:
                _held.pop(name, None)
            with contextlib.suppress(Exception):  # (a lost connection released it already)
                warehouse.scalar(f"SELECT pg_advisory_unlock({key})")
    finally:
        lock.release()


def holds(warehouse: Warehouse, name: str) -> bool:
    """Whether ``name``'s run in this process still holds the PostgreSQL lock it took
    (:func:`exclusive`) on ``warehouse`` — true too when it took none there (DuckDB, or no run of
    ``name`` holding one): only a lock lost with its connection is false (the connection found
    dropped when asked, too)."""
    with _guard:
        held = _held.get(name)
    if held is None or held[0] is not warehouse:
        return True
    _, key, pid = held
    try:
        return bool(int(warehouse.scalar(_HELD_SQL, [pid, key]) or 0))
    except ServiceUnavailable:  # (the connection that held it dropped: so did the lock)
        return False


def still_held(warehouse: Warehouse, name: str) -> None:
    """Raise :class:`~personify.errors.WarehouseError` when source ``name``'s run in this
    process took its PostgreSQL lock (:func:`exclusive`) and no longer holds it: the server
    session that took it ended (its connection dropped), so the server released it and another
    run may hold it now. Called inside the transaction that commits where the next sync starts
    (it then rolls back, and the next sync reads that part again). Nothing to check without
    such a lock (DuckDB, or no run of ``name`` holding one)."""
    if holds(warehouse, name):
        return
    raise WarehouseError(
        f"source {name!r}: the sync lost its lock on PostgreSQL (the connection holding it "
        "dropped), so another sync of it may be running; nothing more of this sync was committed",
        hint=f"run `personify sync {name}` again: it goes on from the last position committed",
    )


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
