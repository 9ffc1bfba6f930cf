"""Sources: where data comes from. ``sync_sources`` pulls every pull-type source now.

Kinds: ``file`` (CSV / JSON Lines / Parquet, :mod:`personify.sources.files`), ``rest``
(declarative REST APIs, :mod:`personify.sources.rest`), ``tracking`` and ``webhook`` (pushed to
the HTTP API; nothing to pull).
"""

from __future__ import annotations

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
    session: Session, names: Sequence[str] | None = None, *, progress: Progress | None = None
) -> list[SyncResult]:
    """Pull the named sources (default: all pull-type sources), incrementally."""
    from personify.sources.files import import_file_source
    from personify.sources.rest import sync_rest_source

    wanted: list[Source] = (
        [session.project.source(n) for n in names]
        if names
        else list(session.project.config.sources)
    )
    results: list[SyncResult] = []
    for source in wanted:
        if isinstance(source, FileSource):
            results.append(import_file_source(session, source, progress=progress))
        elif isinstance(source, RestSource):
            results.append(sync_rest_source(session, source, progress=progress))
    return results
