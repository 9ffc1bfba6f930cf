"""Helpers of the file import tests (``test_file_import*.py``): the rows of a query, a count, a
file written to the project's data folder, one JSON Lines event, a project declaring sources,
the counts' invariant."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from personify.config import FileSource, Project, ProjectConfig
from personify.session import Session

NOW = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def rows(session: Session, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return session.warehouse.fetch(sql, params or [])


def count(session: Session, table: str) -> int:
    return int(session.warehouse.scalar(f"SELECT count(*) FROM {table}"))


def write(session: Session, name: str, text: str) -> Path:
    path = session.project.root / "data" / name
    path.write_text(text, encoding="utf-8")
    return path


def event(message_id: str, **fields: Any) -> str:
    """One JSON Lines event (a ``Viewed`` track call by user ``u``)."""
    body = {"messageId": message_id, "type": "track", "event": "Viewed", "userId": "u"}
    body |= {"timestamp": "2025-05-01T00:00:00Z"} | fields
    return json.dumps({k: v for k, v in body.items() if v is not None})


def with_sources(session: Session, *sources: FileSource) -> None:
    """The session's project, declaring ``sources`` (for ``sync_sources``)."""
    project = session.project
    config = ProjectConfig(warehouse=project.config.warehouse, sources=sources)
    session.project = Project(config, project.root, project.file)


def invariant(counts: dict[str, int]) -> None:
    assert counts["rows_read"] == (
        counts["rows_loaded"] + counts["rows_duplicate"] + counts["rows_quarantined"]
    )
