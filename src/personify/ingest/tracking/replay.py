"""The quarantine, read and replayed: ``personify quarantine list|show|replay``.

Replay re-ingests quarantined tracking events through the same rules as the API
(:func:`~personify.ingest.tracking.normalize.normalize`) with the tracking plan as it is *now* and
the event's original ``received_at`` (so clock-skew correction gives the same timestamp). An event
that passes is stored and its quarantine row deleted, in one transaction; one that fails again stays
(its reason may have changed: that is reported). Replaying twice stores nothing twice: the second
time the rows are gone, and ``messageId`` is deduplicated by the store anyway.

Webhook deliveries quarantined (an invalid record, a body holding no JSON object where the source
looks) are replayed too, one delivery at a time, with the source's mapping and rules as they are
now (:meth:`~personify.sources.webhooks.WebhookReceiver.replay`): their rows that pass are stored
at the delivery's arrival time, those still bad stay under the same ids.

Not replayed: ``conflicting_duplicate`` rows (records of a reused ``messageId``; the stored event
stands), webhook bodies that were cut when kept (over 100,000 characters) and rows of other
sources (files: fix the file and import it again; REST records: sync them again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from personify.config import Project, TrackingSource, WebhookSource, duration_seconds
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
from personify.sources.webhooks import WebhookReceiver, delivery_of, delivery_rows
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
    """Events stored now (and webhook records that left the quarantine)."""
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
    hooks = {s.name: s for s in project.config.sources if isinstance(s, WebhookSource)}
    deliveries: dict[tuple[str, str], list[Entry]] = {}
    plans = {
        name: load_plan(project.path(s.tracking_plan)) if s.tracking_plan else None
        for name, s in tracking.items()
    }
    report = ReplayReport()
    rows: list[Row] = []
    cleared: list[str] = []
    for e in entries(wh, source=source, reason=reason, ids=ids):
        report.looked_at += 1
        if e.source in hooks and (delivery := delivery_of(e.source, e.location)) is not None:
            deliveries.setdefault((e.source, delivery), []).append(e)
            continue
        if e.source not in tracking:
            why = _LIST_ROW if e.source.startswith("list:") else _NOT_REPLAYED
            report.skipped.append((e.id, why))
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
    if deliveries:
        _replay_deliveries(wh, project, hooks, deliveries, report)
    return report


_NOT_REPLAYED: Final = (
    "not from a tracking source or a webhook delivery: import the fixed file again "
    "(a REST record: sync it again)"
)
_LIST_ROW: Final = (
    "a row of an uploaded list: upload the corrected file again (personify lists upload)"
)
_KEPT: Final = 100_000
"""Characters of a webhook body kept in its quarantine rows (see ``WebhookReceiver``)."""


def _replay_deliveries(
    wh: Warehouse,
    project: Project,
    hooks: dict[str, WebhookSource],
    deliveries: dict[tuple[str, str], list[Entry]],
    report: ReplayReport,
) -> None:
    """Each quarantined webhook delivery chosen, applied again (all its rows, nested ones too,
    whichever of them was asked for)."""
    from personify.session import Session

    receiver = WebhookReceiver(Session(project, warehouse=wh))
    try:
        for (name, delivery), chosen in sorted(deliveries.items()):
            body = chosen[0].payload or ""
            if len(body) >= _KEPT:
                for e in chosen:
                    report.skipped.append(
                        (
                            e.id,
                            "the body was cut when kept (over 100,000 characters): "
                            "ask the sender to send it again",
                        )
                    )
                continue
            source = hooks[name]
            before = len(delivery_rows(wh, source, delivery))
            receiver.replay(source, delivery, body.encode())
            left = [i for i, _ in delivery_rows(wh, source, delivery)]
            after = entries(wh, source=name, ids=left) if left else []
            report.stored += max(before - len(after), 0)
            report.still_quarantined += [(e.id, e.reason, e.detail) for e in after]
    finally:
        receiver.close()


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
