"""The quarantine, read and replayed: ``personify quarantine list|show|replay``.

Replay re-ingests quarantined tracking events through the same rules as the API
(:func:`~personify.ingest.tracking.normalize.normalize`) with the tracking plan as it is *now* and
the event's original ``received_at`` (so clock-skew correction gives the same timestamp). An event
that passes is stored and its quarantine row deleted, in one transaction; one that fails again stays
(its reason may have changed: that is reported). Replaying twice stores nothing twice: the second
time the rows are gone, and ``messageId`` is deduplicated by the store anyway.

Not replayed: ``conflicting_duplicate`` rows (records of a reused ``messageId``; the stored event
stands) and rows of other sources (files: fix the file and import it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from personify.config import Project, TrackingSource, duration_seconds
from personify.errors import NotFound
from personify.ingest.tracking.normalize import (
    CONFLICTING_DUPLICATE,
    Inputs,
    Problem,
    Row,
    normalize,
)
from personify.ingest.tracking.plan import Plan, load_plan
from personify.ingest.tracking.store import CONFLICT, store
from personify.warehouse import Warehouse

COLUMNS: Final = ("id", "source", "received_at", "reason", "detail", "location", "payload")
_CHUNK: Final = 500


@dataclass(frozen=True)
class Entry:
    """One quarantine row."""

    id: str
    source: str
    received_at: datetime
    reason: str
    detail: str
    location: str | None
    payload: str | None


@dataclass
class ReplayReport:
    """What a replay did."""

    looked_at: int = 0
    stored: int = 0
    """Events stored now."""
    already_stored: int = 0
    """Events whose ``messageId`` was already stored (same payload): their rows are cleared."""
    still_quarantined: list[tuple[str, str, str]] = field(default_factory=list)
    """``(id, reason, detail)`` of events that fail again."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(id, why)`` of rows replay does not handle."""


def _where(
    source: str | None, reason: str | None, ids: Sequence[str] = ()
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if source:
        clauses.append("source = ?")
        params.append(source)
    if reason:
        clauses.append("reason = ?")
        params.append(reason)
    if ids:
        clauses.append("(" + " OR ".join("id LIKE ?" for _ in ids) + ")")
        params += ["".join(c for c in i.lower() if c in "0123456789abcdef") + "%" for i in ids]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def entries(
    wh: Warehouse,
    *,
    source: str | None = None,
    reason: str | None = None,
    ids: Sequence[str] = (),
    limit: int | None = None,
) -> list[Entry]:
    """Quarantine rows, newest first (``ids`` may be prefixes, as ``list`` shows them)."""
    where, params = _where(source, reason, ids)
    sql = f"SELECT {', '.join(COLUMNS)} FROM quarantine{where} ORDER BY received_at DESC, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [Entry(*row) for row in wh.fetch(sql, params)]


def counts(wh: Warehouse) -> list[tuple[str, str, int]]:
    """``(source, reason, rows)`` for the whole quarantine."""
    rows = wh.fetch(
        "SELECT source, reason, count(*) FROM quarantine GROUP BY source, reason "
        "ORDER BY source, reason"
    )
    return [(s, r, int(n)) for s, r, n in rows]


def entry(wh: Warehouse, id_prefix: str) -> Entry:
    """The one row whose id starts with ``id_prefix``."""
    found = entries(wh, ids=[id_prefix], limit=2)
    if not found:
        raise NotFound(
            f"no quarantine row with id {id_prefix!r}", hint="see `personify quarantine list`"
        )
    if len(found) > 1:
        raise NotFound(f"{id_prefix!r} names several quarantine rows", hint="give more of the id")
    return found[0]


def _inputs(source: TrackingSource, plan: Plan | None, received_at: datetime) -> Inputs:
    return Inputs(
        source=source.name,
        received_at=received_at,
        plan=plan,
        warn_only=source.tracking_plan_mode == "warn",
        future_tolerance=duration_seconds(source.future_tolerance),
    )


def replay(
    wh: Warehouse,
    project: Project,
    *,
    source: str | None = None,
    reason: str | None = None,
    ids: Sequence[str] = (),
) -> ReplayReport:
    """Re-ingest the quarantined tracking events chosen (all of them by default)."""
    tracking = {s.name: s for s in project.config.sources if isinstance(s, TrackingSource)}
    plans = {
        name: load_plan(project.path(s.tracking_plan)) if s.tracking_plan else None
        for name, s in tracking.items()
    }
    report = ReplayReport()
    rows: list[Row] = []
    cleared: list[str] = []
    for e in entries(wh, source=source, reason=reason, ids=ids):
        report.looked_at += 1
        if e.source not in tracking:
            report.skipped.append((e.id, "not from a tracking source: import the fixed file again"))
            continue
        if e.reason == CONFLICTING_DUPLICATE:
            report.skipped.append((e.id, "a record of a reused messageId; the stored event stands"))
            continue
        inputs = _inputs(tracking[e.source], plans[e.source], e.received_at)
        result = normalize((e.payload or "").encode(), 0, inputs)
        if isinstance(result, Problem):
            where = f"{result.pointer}: " if result.pointer and not result.violations else ""
            report.still_quarantined.append((e.id, result.reason, where + result.message))
            continue
        rows.append(result)
        cleared.append(e.id)
    if rows:
        _commit(wh, rows, cleared, report)
    return report


def _commit(wh: Warehouse, rows: list[Row], cleared: list[str], report: ReplayReport) -> None:
    with wh.transaction():
        status = store(wh, rows, optimistic=False)
        for start in range(0, len(cleared), _CHUNK):
            chunk = cleared[start : start + _CHUNK]
            wh.execute(f"DELETE FROM quarantine WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
    for code in status:
        if code == CONFLICT:
            continue  # recorded anew as conflicting_duplicate by store()
        if code:
            report.already_stored += 1
        else:
            report.stored += 1
