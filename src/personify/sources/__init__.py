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
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from personify.config import FileSource, RestSource, Source
from personify.progress import Progress
from personify.session import Session

PARALLEL_SOURCES: Final = 2
"""File sources of different tables imported at once (threads), at most."""


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
    # each lane runs in a copy of the caller's context: the pinned clock (``--now``) and the
    # other context variables are the caller's, not the worker thread's empty ones
    with ThreadPoolExecutor(PARALLEL_SOURCES, thread_name_prefix="personify-sync") as pool:
        submitted = [pool.submit(contextvars.copy_context().run, run, lane) for lane in ordered]
        for future in submitted:
            future.result()
    for lane in lanes:
        for source in lane:
            if source.name in failures:
                raise failures[source.name]
    return results


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
