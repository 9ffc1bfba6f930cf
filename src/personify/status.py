"""``personify status``: what exists and how healthy it is, in one report."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from personify import clock
from personify.config import (
    EventsDestination,
    FileSource,
    Project,
    RestSource,
    TrackingSource,
    WebhookSource,
)
from personify.errors import PersonifyError
from personify.quality import latest_run as latest_reconciliation
from personify.session import Session
from personify.sources.schedule import last_runs, run_summary
from personify.warehouse.base import UNNEST, Warehouse
from personify.warehouse.migrations import current_version
from personify.warehouse.schema import TABLES

if TYPE_CHECKING:
    from personify.destinations.erasures import Stranded


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


ESTIMATE_ABOVE: Final = 100_000
"""On PostgreSQL, tables the planner estimates above this many rows are not counted: their
``pg_class.reltuples`` estimate is reported (``≈``), as a count(*) would scan them."""


def table_rows(wh: Warehouse) -> tuple[dict[str, int], list[str]]:
    """Rows per public table, and which of them are estimates (big PostgreSQL tables)."""
    estimates: dict[str, float] = {}
    if wh.scheme == "postgresql":
        with contextlib.suppress(Exception):  # no statistics: count them all
            estimates = {
                str(name): float(n)
                for name, n in wh.fetch(
                    "SELECT c.relname, c.reltuples FROM pg_class AS c JOIN pg_namespace AS n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                    "AND c.relkind = 'r'"
                )
            }
    rows: dict[str, int] = {}
    estimated: list[str] = []
    for t in TABLES:
        guess = estimates.get(t.name, -1.0)
        if guess >= ESTIMATE_ABOVE:
            rows[t.name] = int(guess)
            estimated.append(t.name)
        else:
            rows[t.name] = int(wh.scalar(f'SELECT count(*) FROM "{t.name}"') or 0)
    return rows, estimated


def source_freshness(session: Session) -> dict[str, dict[str, Any]]:
    """Per source: when it last delivered data (``last_at``) and the lag since (seconds).

    Tracking sources: the last event received; webhook sources: the last delivery; REST and
    file sources: the last sync (or import)."""
    wh, now = session.warehouse, clock.now()
    sources = session.project.config.sources
    out: dict[str, dict[str, Any]] = {}
    synced = _by_source(
        wh,
        "SELECT source, max(coalesce(last_sync_at, updated_at)) FROM source_state GROUP BY source",
    )
    imported = _by_source(wh, "SELECT source, max(imported_at) FROM file_imports GROUP BY source")
    delivered = _by_source(
        wh, "SELECT source, max(received_at) FROM webhook_receipts GROUP BY source"
    )
    tracked = [s.name for s in sources if isinstance(s, TrackingSource)]
    events = (
        _by_source(
            wh,
            f"SELECT source, max(received_at) FROM events WHERE source IN (SELECT {UNNEST}) "
            "GROUP BY source",
            [tracked],
        )
        if tracked
        else {}
    )
    for source in sources:
        if isinstance(source, TrackingSource):
            last = events.get(source.name)
        elif isinstance(source, WebhookSource):
            last = delivered.get(source.name)
        else:
            last = synced.get(source.name) or imported.get(source.name)
        lag = round((now - last).total_seconds(), 3) if isinstance(last, datetime) else None
        out[source.name] = {"last_at": last, "lag_seconds": lag}
    return out


def _by_source(wh: Warehouse, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    return {str(r[0]): r[1] for r in wh.fetch(sql, params or [])}


def realtime_status(session: Session) -> dict[str, Any]:
    """Queues and freshness: the bus depth (read from JetStream), and, when this runs inside a
    server, that server's queue depth, event-to-profile latency and cache hit ratio."""
    from personify.realtime.stats import live

    out: dict[str, Any] = {}
    servers = live()
    if servers:
        out["server"] = servers[0].report()
    bus = session.project.config.bus
    if bus and "bus_depth" not in out.get("server", {}):
        from personify.realtime.bus import bus_depth, bus_error_text, parse_bus_url

        try:
            out["bus_depth"] = bus_depth(parse_bus_url(bus, session.project.config.name))
        except Exception as e:  # unreachable: say so, never fail the report
            out["bus_depth"] = None
            out["bus_error"] = bus_error_text(e)
    elif servers:
        out["bus_depth"] = out["server"].get("bus_depth")
    if not servers:
        out["note"] = (
            "per-process figures (in-process queue, event-to-profile latency, cache hit ratio) "
            "are on each `personify serve`'s /metrics"
        )
    return out


def project_problems(project: Project) -> list[str]:
    """What in the project's own files needs fixing while everything else runs, for people: each
    tracking-plan file that cannot be used (its events are quarantined until it is fixed)."""
    from personify.ingest.tracking.plan import plan_problems

    out = []
    for source in project.config.sources:
        if isinstance(source, TrackingSource) and source.tracking_plan:
            for broken in plan_problems(project.path(source.tracking_plan)):
                out.append(f"source {source.name}: tracking plan: {broken}; {broken.consequence}")
    return out


def status_report(session: Session) -> dict[str, Any]:
    """Health of the project: warehouse, tables, sources and their last sync, quarantine, runs."""
    wh = session.warehouse
    now = clock.now()
    tables, estimated = table_rows(wh)
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
    stranded = _stranded(session)
    destinations = _destinations(session, runs, now, stranded)
    last_run = wh.fetch(
        "SELECT run_id, started_at, finished_at, now, status, stats FROM pipeline_runs "
        "ORDER BY started_at DESC LIMIT 1"
    )
    run = None
    if last_run:
        r = last_run[0]
        stats = r[5]
        stages = (json.loads(stats) if isinstance(stats, str) else stats) or {}
        run = {
            "run_id": r[0],
            "started_at": _iso(r[1]),
            "finished_at": _iso(r[2]),
            "now": _iso(r[3]),
            "status": r[4],
            "stages": stages,
            "errors": [  # what a stage that went on could not do (a segment it could not run)
                f"{name}: {problem}"
                for name, stage in stages.items()
                for problem in (stage.get("problems") or [] if isinstance(stage, dict) else [])
            ],
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
        "tables_estimated": estimated,
        "sources": sources,
        "destinations": destinations,
        "quarantine": {
            "total": sum(int(v) for v in quarantine_by_source.values()),
            "by_source": {k: int(v) for k, v in quarantine_by_source.items()},
            "by_reason": {k: int(v) for k, v in by_reason.items()},
        },
        "last_run": run,
        "segments_failing": _segments_failing(wh),
        "segments_whole_in_real_time": _segments_whole(session),
        "queues": realtime_status(session),
        "reconciliation": _reconciliation(session),
        "predictive": _predictive(session),
        "quality": _quality(session),
        "journeys": _journeys(session, now),
        "max_complaint_rate": session.project.config.engagement.max_complaint_rate,
        "problems": project_problems(session.project) + [s.message() for s in stranded],
        "alerts": _alerts(session),
    }


def _segments_failing(wh: Warehouse) -> list[dict[str, Any]]:
    """The segments whose last refresh failed — by ``personify run``, ``personify segments
    refresh`` or the real-time path — and kept their memberships: name, file, when
    (``--now``), what failed (``kind``: sql, cap, timeout, real-time-timeout), the error
    (masked)."""
    from personify.audiences.memberships import failing_segments

    return [
        {
            "segment": f.segment,
            "file": f.file,
            "failed_at": _iso(f.failed_at),
            "kind": f.kind,
            "error": f.error,
        }
        for f in failing_segments(wh)
    ]


def _segments_whole(session: Session) -> list[dict[str, Any]]:
    """The ``refresh: real-time`` segments that rank customers against each other (``ORDER BY
    … LIMIT``, window functions), which every real-time pass refreshes whole — for everyone,
    not just the customers it reacts for: name, file, what ranks (``LIMIT``, ``a window
    function (RANK)``). Empty while a segment file cannot be read (``personify run`` says why)."""
    from personify.audiences.stage import project_segments

    try:
        segments = project_segments(session.project)
    except PersonifyError:
        return []
    return [
        {"segment": s.name, "file": s.shown or str(s.file), "ranks": s.ranks}
        for s in segments
        if s.real_time == "whole"
    ]


def _stranded(session: Session) -> list[Stranded]:
    """Erased people's records destinations can never remove (each destination's count, why,
    what to do)."""
    from personify.destinations import stranded_removals

    return stranded_removals(session.warehouse, session.project)


def _alerts(session: Session) -> list[dict[str, Any]]:
    """Each alert's state as last evaluated (``personify alerts list``): name, signal, state,
    firing since, subjects."""
    if not session.project.config.alerts:
        return []
    from personify.alerts import list_alerts

    return [
        {
            "name": a.name,
            "signal": a.signal,
            "state": a.state,
            "firing_since": a.firing_since,
            "subjects": a.subjects,
            "failed_notifications": len(a.failed_notifications),
        }
        for a in list_alerts(session)
    ]


def _destinations(
    session: Session, runs: Any, now: Any, stranded: Sequence[Stranded] = ()
) -> list[dict[str, Any]]:
    """Each destination's last push and schedule, its records by state (sent, rejected,
    remove_rejected, erased) and how many records its last push removed (``on_remove: delete``)
    — ``removals_pending``: erased people's records the next push removes first, of which
    ``removals_stranded`` no push can (``stranded``: :func:`_stranded`, the problems' lines);
    ``last_run_warnings``: what the last push's counts say to look at (rows Meta could not
    read)."""
    from personify.destinations import push_warnings, run_name

    config = session.project.config.destinations
    if not config:
        return []
    states: dict[str, dict[str, int]] = {}
    for name, status, n in session.warehouse.fetch(
        "SELECT destination, status, count(*) FROM destination_state GROUP BY 1, 2"
    ):
        states.setdefault(str(name), {})[str(status)] = int(n)
    never: dict[str, int] = {}
    for s in stranded:
        never[s.destination] = never.get(s.destination, 0) + s.records
    out = []
    for d in config:
        run = runs.get(run_name(d.name))
        if isinstance(d, EventsDestination):
            out.append(_forwarding(session, d, runs, now))
            continue
        out.append(
            {
                "name": d.name,
                "kind": "rest",
                "records": states.get(d.name, {}),
                "on_remove": d.on_remove,
                "last_run_removed": run.counts.get("rows_removed") if run else None,
                "removals_pending": states.get(d.name, {}).get("erased", 0),
                "removals_stranded": never.get(d.name, 0),
                "last_run_warnings": push_warnings(d.name, run.counts) if run else [],
                **run_summary(runs, run_name(d.name), d.schedule, now),
            }
        )
    return out


def _forwarding(session: Session, d: EventsDestination, runs: Any, now: Any) -> dict[str, Any]:
    """An events destination: its events by outcome since it began (``records``: sent,
    rejected, without_consent), what waits (``events_pending``) and its lag — the age of the
    oldest event not yet forwarded (0 when none waits)."""
    from personify.destinations import events, run_name

    pos = events.position(session.warehouse, d.name)
    return {
        "name": d.name,
        "kind": "events",
        "records": events.totals(session.warehouse, d.name),
        "on_remove": None,
        "last_run_removed": None,
        "removals_pending": 0,
        "removals_stranded": 0,
        "forwarded_from": pos.floor if pos else None,
        **events.waiting(session.warehouse, d, now),
        **run_summary(runs, run_name(d.name), d.schedule, now),
    }


def _journeys(session: Session, now: Any) -> dict[str, dict[str, Any]]:
    """Per journey, the last 7 days' headline (``personify report journeys``'s figures): sends,
    unique opens and clicks by people (machine ones excluded), conversions, revenue, and the
    spam complaint rate over delivered, flagged above ``engagement.max_complaint_rate``."""
    from personify.engagement.report import journey_headlines

    return journey_headlines(session.warehouse, session.project, now)


def _quality(session: Session) -> dict[str, Any]:
    """The last validation check (rules broken, those flagged for review), the volume and
    null-rate anomalies and the schema changes of the last 24 hours."""
    from personify.quality.anomalies import null_rate_anomalies, volume_anomalies
    from personify.quality.drift import recent_changes
    from personify.quality.rules import latest_violations

    broken = latest_violations(session.warehouse)
    return {
        "violations": broken,
        "flagged": [v["rule"] for v in broken if v["action"] in ("flag", "quarantine")],
        "anomalies": [
            asdict(a)
            for a in [*volume_anomalies(session.warehouse), *null_rate_anomalies(session.warehouse)]
        ],
        "schema_changes": [  # schema drift of the last 24 h
            {**asdict(c), "detected_at": c.detected_at.isoformat()}
            for c in recent_changes(session.warehouse)
        ],
    }


def _predictive(session: Session) -> dict[str, Any] | None:
    """The predictive traits' last fit (``traits.predictive``): fitted, or skipped and why."""
    if not session.project.config.traits.predictive.enabled:
        return None
    rows = session.warehouse.fetch(
        "SELECT status, note, fitted_at, customers FROM predictive_fits "
        "ORDER BY fitted_at DESC LIMIT 1"
    )
    if not rows:
        return {"status": "not fitted yet", "note": None, "fitted_at": None, "customers": 0}
    status, note, fitted_at, customers = rows[0]
    return {
        "status": status,
        "note": note,
        "fitted_at": _iso(fitted_at),
        "customers": int(customers),
    }


def _reconciliation(session: Session) -> dict[str, Any] | None:
    """The last ``personify reconcile`` run; ``flagged``: more discrepancies than
    ``quality.reconcile.threshold`` — for review."""
    last = latest_reconciliation(session.warehouse)
    if last is not None:
        last["threshold"] = session.project.config.quality.reconcile.threshold
    return last
