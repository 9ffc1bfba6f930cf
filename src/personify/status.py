"""``personify status``: what exists and how healthy it is, in one report."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from personify import clock
from personify.config import FileSource, RestSource, TrackingSource, WebhookSource
from personify.quality import latest_run as latest_reconciliation
from personify.session import Session
from personify.sources.schedule import last_runs, run_summary
from personify.warehouse.migrations import current_version
from personify.warehouse.schema import TABLES


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def status_report(session: Session) -> dict[str, Any]:
    """Health of the project: warehouse, tables, sources and their last sync, quarantine, runs."""
    wh = session.warehouse
    now = clock.now()
    tables = {t.name: int(wh.scalar(f'SELECT count(*) FROM "{t.name}"') or 0) for t in TABLES}
    quarantine_by_source = dict(
        wh.fetch("SELECT source, count(*) FROM quarantine GROUP BY source ORDER BY source")
    )
    by_reason = dict(
        wh.fetch("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 2 DESC")
    )
    last_sync = {
        row[0]: row[1]
        for row in wh.fetch(
            "SELECT source, max(coalesce(last_sync_at, updated_at)) FROM source_state "
            "GROUP BY source"
        )
    }
    imported = {
        row[0]: row[1]
        for row in wh.fetch("SELECT source, max(imported_at) FROM file_imports GROUP BY source")
    }
    events_by_source = {
        row[0]: (row[1], row[2])
        for row in wh.fetch("SELECT source, count(*), max(received_at) FROM events GROUP BY source")
    }
    deliveries = {
        row[0]: (row[1], row[2])
        for row in wh.fetch(
            "SELECT source, count(*), max(received_at) FROM webhook_receipts GROUP BY source"
        )
    }
    runs = last_runs(wh)
    sources = []
    for source in session.project.config.sources:
        last = last_sync.get(source.name) or imported.get(source.name)
        entry: dict[str, Any] = {"name": source.name, "kind": source.kind}
        if isinstance(source, TrackingSource):
            count, latest = events_by_source.get(source.name, (0, None))
            entry |= {"events": int(count), "last_event_at": _iso(latest)}
            last = latest
        elif isinstance(source, FileSource):
            entry |= {"path": source.path, "table": source.table}
        elif isinstance(source, WebhookSource):
            count, latest = deliveries.get(source.name, (0, None))
            entry |= {"deliveries": int(count), "table": source.table}
            last = latest
        entry["last_sync_at"] = _iso(last)
        entry["lag_seconds"] = round((now - last).total_seconds(), 3) if last else None
        entry["quarantined"] = int(quarantine_by_source.get(source.name, 0))
        if isinstance(source, FileSource | RestSource):
            entry |= run_summary(runs, source.name, source.schedule, now)
        sources.append(entry)
    last_run = wh.fetch(
        "SELECT run_id, started_at, finished_at, now, status, stats FROM pipeline_runs "
        "ORDER BY started_at DESC LIMIT 1"
    )
    run = None
    if last_run:
        r = last_run[0]
        stats = r[5]
        run = {
            "run_id": r[0],
            "started_at": _iso(r[1]),
            "finished_at": _iso(r[2]),
            "now": _iso(r[3]),
            "status": r[4],
            "stages": json.loads(stats) if isinstance(stats, str) else stats,
        }
    return {
        "project": session.project.config.name,
        "root": str(session.project.root),
        "now": now.isoformat(),
        "warehouse": {
            "url": mask_url(session.project.config.warehouse),
            "backend": wh.scheme,
            "schema_version": current_version(wh),
        },
        "tables": tables,
        "sources": sources,
        "quarantine": {
            "total": sum(int(v) for v in quarantine_by_source.values()),
            "by_source": {k: int(v) for k, v in quarantine_by_source.items()},
            "by_reason": {k: int(v) for k, v in by_reason.items()},
        },
        "last_run": run,
        "queues": {},
        "reconciliation": _reconciliation(session),
        "quality": _quality(session),
    }


def _quality(session: Session) -> dict[str, Any]:
    """The last validation check (rules broken, those flagged for review) and the volume
    anomalies of the last 24 hours."""
    from personify.quality.anomalies import null_rate_anomalies, volume_anomalies
    from personify.quality.rules import latest_violations

    broken = latest_violations(session.warehouse)
    return {
        "violations": broken,
        "flagged": [v["rule"] for v in broken if v["action"] in ("flag", "quarantine")],
        "anomalies": [
            asdict(a)
            for a in [*volume_anomalies(session.warehouse), *null_rate_anomalies(session.warehouse)]
        ],
    }


def _reconciliation(session: Session) -> dict[str, Any] | None:
    """The last ``personify reconcile`` run; ``flagged``: more discrepancies than
    ``quality.reconcile.threshold`` — for review."""
    last = latest_reconciliation(session.warehouse)
    if last is not None:
        last["threshold"] = session.project.config.quality.reconcile.threshold
    return last
