"""Sources: where data comes from. ``sync_sources`` pulls every pull-type source now.

Kinds: ``file`` (CSV / JSON Lines / Parquet, :mod:`personify.sources.files`), ``rest``
(declarative REST APIs, :mod:`personify.sources.rest`), ``tracking`` and ``webhook`` (pushed to
the HTTP API; nothing to pull).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from personify.config import FileSource, RestSource, Source
from personify.progress import Progress
from personify.session import Session


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
    results: list[SyncResult] = []
    for source in wanted:
        if isinstance(source, FileSource | RestSource):
            results.append(_run_one(session, source, progress, trigger))
    return results


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
