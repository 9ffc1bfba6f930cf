"""Files as a source (placeholder until the file importer lands)."""

from __future__ import annotations

from personify.config import FileSource
from personify.progress import Progress
from personify.session import Session
from personify.sources import SyncResult


def import_file_source(
    session: Session, source: FileSource, *, progress: Progress | None = None
) -> SyncResult:
    raise NotImplementedError
