"""Sources: where data comes from. ``sync_sources`` pulls every pull-type source now.

Kinds: ``file`` (CSV / JSON Lines / Parquet, :mod:`personify.sources.files`), ``rest``
(declarative REST APIs, :mod:`personify.sources.rest`), ``tracking`` and ``webhook`` (pushed to
the HTTP API; nothing to pull).

File sources that load different tables are imported side by side (:data:`PARALLEL_SOURCES`
threads): each source's files are one transaction per file and DuckDB or PostgreSQL take the rows
of two tables at once (DuckDB releases the GIL while it appends, validation runs in its own
in-memory engine), so the events files load beside the customer, order and consent files instead
of after them. Sources that load the same table still run one after another, in the project's
order (one writer per table); REST sources run after the file sources, one at a time.

The largest lane sets how long the sync takes. On Linux the threads of the other lanes (and the
threads they start: validation, their engine's workers) run at a lower priority
(:data:`LANE_NICE`), so when the cores are short it is the shorter lanes that wait — they have
the time to spare.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from personify.config import FileSource, RestSource, Source
from personify.progress import Progress
from personify.session import Session

PARALLEL_SOURCES: Final = 2
"""File sources of different tables imported at once (threads), at most."""
LANE_NICE: Final = 10
"""How much lower (in nice steps) the threads of every lane but the largest run, on Linux. The
1 M world's load (benchmarks/world_load.py): its events lane is the critical path, and the other
lane finishes with ~15 s to spare; at 10, the load step took 41.4–42.3 s against 43.6–46.9
(interleaved, 4 pairs), at 5 about half that gain."""


@dataclass
class SyncResult:
    """What one source's sync did."""

    source: str
    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def sync_sources(
    session: Session,
    names: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
    trigger: str = "manual",
) -> list[SyncResult]:
    """Pull the named sources (default: all pull-type sources), incrementally. Each source's run
    holds its lock (never two at once) and is recorded for ``personify status``
    (:mod:`personify.sources.schedule`)."""
    wanted: list[Source] = (
        [session.project.source(n) for n in names]
        if names
        else list(session.project.config.sources)
    )
    pulled = [s for s in wanted if isinstance(s, FileSource | RestSource)]
    files = [s for s in pulled if isinstance(s, FileSource)]
    done: dict[str, SyncResult] = {}
    lanes = _lanes(files)
    if len(lanes) > 1 and PARALLEL_SOURCES > 1:
        done.update(_run_lanes(session, lanes, progress, trigger))
    for source in pulled:  # REST sources, and file sources when there is one lane
        if source.name not in done:
            done[source.name] = _run_one(session, source, progress, trigger)
    return [done[s.name] for s in pulled]


def _lanes(sources: Sequence[FileSource]) -> list[list[FileSource]]:
    """The file sources grouped by the table they store into (in the project's order)."""
    from personify.profiles.records import route

    lanes: dict[str, list[FileSource]] = {}
    for source in sources:
        lanes.setdefault(route(source.table), []).append(source)
    return list(lanes.values())


def _run_lanes(
    session: Session,
    lanes: list[list[FileSource]],
    progress: Progress | None,
    trigger: str,
) -> dict[str, SyncResult]:
    """Each lane's sources one after another, lanes side by side (largest first, so the long
    one starts at once). A failing source stops its lane; the others finish, then the first
    failure (in the project's order) is raised."""
    results: dict[str, SyncResult] = {}
    failures: dict[str, BaseException] = {}
    session.warehouse  # opened (and migrated) once, before the threads  # noqa: B018

    def run(lane: list[FileSource]) -> None:
        try:
            for source in lane:
                try:
                    results[source.name] = _run_one(session, source, progress, trigger)
                except BaseException as e:  # noqa: BLE001 (raised below, after the other lanes)
                    failures[source.name] = e
                    return
        finally:
            # the pool's thread ends with the sync: its own connection (one PostgreSQL
            # session per lane) closes now, not when the warehouse does — a server that syncs
            # on a schedule would otherwise keep one per lane thread it ever ran
            session.warehouse.release_thread()

    ordered = sorted(lanes, key=lambda lane: _lane_bytes(session, lane), reverse=True)
    first, lower = ordered[0], _lower_priority()
    if lower is not None:
        _start_arrow_threads()  # (here: a lane's thread would start them at its own priority)

    def run_lane(work: list[FileSource]) -> None:
        if work is not first and lower is not None:
            _lower_to(lower)
        run(work)

    # each lane runs in a copy of the caller's context: the pinned clock (``--now``) and the
    # other context variables are the caller's, not the worker thread's empty ones
    with ThreadPoolExecutor(PARALLEL_SOURCES, thread_name_prefix="personify-sync") as pool:
        submitted = [
            pool.submit(contextvars.copy_context().run, run_lane, work) for work in ordered
        ]
        for future in submitted:
            future.result()
    for lane in lanes:
        for source in lane:
            if source.name in failures:
                raise failures[source.name]
    return results


def _lower_priority() -> int | None:
    """The priority (nice value) the lanes beside the largest take: :data:`LANE_NICE` below the
    calling thread's. ``None`` where threads are not reniced: off Linux, where ``setpriority``
    on a thread id would name a process instead of renicing that thread alone."""
    if LANE_NICE <= 0 or not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError):
        return min(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + LANE_NICE, 19)
    return None


def _lower_to(nice: int) -> None:
    """Run the calling thread (and the threads it starts later: they inherit it) at ``nice``
    if it runs higher. Never raises: a priority is a hint."""
    me = threading.get_native_id()
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, me) < nice:
            os.setpriority(os.PRIO_PROCESS, me, nice)


def _start_arrow_threads() -> None:
    """Start Arrow's shared CPU and I/O threads from the calling thread (they start on first use,
    at the priority of the thread that first needs them — the lanes all read through them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), buffer)
    pq.read_table(io.BytesIO(buffer.getvalue()))


def _lane_bytes(session: Session, lane: list[FileSource]) -> int:
    """The size of a lane's files (0 for those that cannot be listed: their error comes later)."""
    from personify.sources.files import expand

    total = 0
    for source in lane:
        with contextlib.suppress(Exception):
            total += sum(p.stat().st_size for p in expand(session.project, source.path))
    return total


def _run_one(
    session: Session, source: FileSource | RestSource, progress: Progress | None, trigger: str
) -> SyncResult:
    import time

    from personify import clock
    from personify.sources.files import import_file_source
    from personify.sources.rest import sync_rest_source
    from personify.sources.schedule import exclusive, record_run

    with exclusive(source.name, warehouse=session.warehouse):
        started, t0 = clock.now(), time.perf_counter()
        try:
            if isinstance(source, FileSource):
                result = import_file_source(session, source, progress=progress)
            else:
                result = sync_rest_source(session, source, progress=progress)
        except Exception as e:
            with contextlib.suppress(Exception):  # (the warehouse itself may be what failed)
                record_run(
                    session.warehouse,
                    source.name,
                    started_at=started,
                    seconds=time.perf_counter() - t0,
                    counts={},
                    error=f"{type(e).__name__}: {getattr(e, 'message', None) or e}",
                    trigger=trigger,
                )
            raise
        record_run(
            session.warehouse,
            source.name,
            started_at=started,
            seconds=result.seconds,
            counts=result.counts,
            error=None,
            trigger=trigger,
        )
        return result
