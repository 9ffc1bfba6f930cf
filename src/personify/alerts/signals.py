"""What each alert signal (``when:``) reads: figures ``personify status`` already computes.

A signal gives its *subjects*: the sources, destinations, journeys, rules or stages for which it
holds, each with the figure that made it hold (a lag in seconds, a count, a rate). No subject: it
does not hold. Subjects are names from the project, never personal data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from personify.config import Alert, duration_seconds
from personify.session import Session

Subjects = dict[str, Any]
"""Subject name → the figure behind it."""


class Readings:
    """The signals of one evaluation, each computed once however many alerts watch it."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self._memo: dict[str, Any] = {}

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    def read(self, alert: Alert) -> Subjects:
        """The subjects for which ``alert``'s signal holds (filtered by its ``only:``)."""
        found = SIGNALS[alert.when](self, alert)
        if alert.only:
            found = {k: v for k, v in found.items() if k in alert.only}
        return found


def _source_failed(r: Readings, alert: Alert) -> Subjects:
    from personify.sources.schedule import last_runs

    runs = r.memo("runs", lambda: last_runs(r.session.warehouse))
    return {name: "failed" for name, run in sorted(runs.items()) if run.status == "failed"}


def _source_stale(r: Readings, alert: Alert) -> Subjects:
    from personify.status import source_freshness

    fresh = r.memo("freshness", lambda: source_freshness(r.session))
    limits = r.session.project.config.quality.freshness
    out: Subjects = {}
    for name, seen in sorted(fresh.items()):
        limit = alert.over if alert.over is not None else limits.get(name)
        lag = seen["lag_seconds"]
        if limit is not None and lag is not None and lag > duration_seconds(limit):
            out[name] = round(lag)
    return out


def _over(alert: Alert, default: float = 0.0) -> float:
    return float(alert.over) if isinstance(alert.over, int | float) else default


def _quarantine_growth(r: Readings, alert: Alert) -> Subjects:
    rows = r.session.warehouse.fetch(
        "SELECT source, count(*) FROM quarantine WHERE received_at > CAST(? AS TIMESTAMPTZ) "
        "AND received_at <= CAST(? AS TIMESTAMPTZ) GROUP BY source ORDER BY source",
        [r.now - timedelta(hours=1), r.now],
    )
    return {str(s): int(n) for s, n in rows if int(n) > _over(alert)}


def _run_failed(r: Readings, alert: Alert) -> Subjects:
    import msgspec

    rows = r.session.warehouse.fetch(
        "SELECT status, CAST(stats AS VARCHAR) FROM pipeline_runs WHERE finished_at IS NOT NULL "
        "ORDER BY started_at DESC LIMIT 1"
    )
    if not rows or rows[0][0] != "failed":
        return {}
    stats = msgspec.json.decode(rows[0][1]) if rows[0][1] else {}
    # the stages with problems (their words may quote data: counted, not quoted)
    stages: Subjects = {
        name: len(stage.get("problems") or [])
        for name, stage in (stats or {}).items()
        if isinstance(stage, dict) and stage.get("problems")
    }
    return stages or {"run": "failed"}


def _delivery_failures(r: Readings, alert: Alert) -> Subjects:
    rows = r.session.warehouse.fetch(
        "SELECT coalesce(journey, template), count(*) FROM messages WHERE status = 'failed' "
        "AND coalesce(sent_at, decided_at) > CAST(? AS TIMESTAMPTZ) "
        "AND coalesce(sent_at, decided_at) <= CAST(? AS TIMESTAMPTZ) GROUP BY 1 ORDER BY 1",
        [r.now - timedelta(hours=1), r.now],
    )
    return {str(j): int(n) for j, n in rows if int(n) > _over(alert)}


def _headlines(r: Readings) -> dict[str, dict[str, Any]]:
    from personify.engagement.report import journey_headlines

    result: dict[str, dict[str, Any]] = r.memo(
        "journeys",
        lambda: journey_headlines(r.session.warehouse, r.session.project, r.now),
    )
    return result


def _complaint_rate(r: Readings, alert: Alert) -> Subjects:
    ceiling = _over(alert, r.session.project.config.engagement.max_complaint_rate)
    return {
        j: row["complaint_rate"]
        for j, row in sorted(_headlines(r).items())
        if row["complaint_rate"] > ceiling
    }


def _bounce_rate(r: Readings, alert: Alert) -> Subjects:
    ceiling = _over(alert, r.session.project.config.engagement.max_bounce_rate)
    out: Subjects = {}
    for j, row in sorted(_headlines(r).items()):
        sends = int(row["sends"])
        rate = round((sends - int(row["delivered"])) / sends, 6) if sends else 0.0
        if rate > ceiling:
            out[j] = rate
    return out


def _tracking_plan_broken(r: Readings, alert: Alert) -> Subjects:
    from personify.config import TrackingSource
    from personify.ingest.tracking.plan import plan_problems

    project = r.session.project
    out: Subjects = {}
    for source in project.config.sources:
        if isinstance(source, TrackingSource) and source.tracking_plan:
            broken = plan_problems(project.path(source.tracking_plan))
            if broken:
                out[source.name] = len(broken)
    return out


def _anomaly(r: Readings, alert: Alert) -> Subjects:
    from personify.quality.anomalies import null_rate_anomalies, volume_anomalies

    wh = r.session.warehouse
    out: Subjects = {}
    for a in [*volume_anomalies(wh, r.now), *null_rate_anomalies(wh, r.now)]:
        out[f"{a.source}/{a.table}/{a.name}"] = a.kind
    return out


def _quality_flagged(r: Readings, alert: Alert) -> Subjects:
    from personify.quality.rules import latest_violations

    return {
        str(v["rule"]): int(v["violations"])
        for v in latest_violations(r.session.warehouse)
        if v["action"] in ("flag", "quarantine") and int(v["violations"])
    }


def _reconcile_flagged(r: Readings, alert: Alert) -> Subjects:
    from personify.quality import latest_run

    last = latest_run(r.session.warehouse)
    if last is None or not last.get("flagged"):
        return {}
    return {
        "reconciliation": int(last.get("missing_in_warehouse", 0))
        + int(last.get("missing_at_source", 0))
        + int(last.get("mismatched", 0))
    }


def _removals_stranded(r: Readings, alert: Alert) -> Subjects:
    from personify.destinations import stranded_removals

    return {
        f"destination:{s.destination}": s.records
        for s in stranded_removals(r.session.warehouse, r.session.project)
    }


def _forwarding_lag(r: Readings, alert: Alert) -> Subjects:
    """Events destinations whose oldest event not yet forwarded is older than ``over`` (default
    5 minutes): the lag in seconds, as ``personify status`` shows it."""
    from personify.config import EventsDestination
    from personify.destinations import events

    limit = duration_seconds(alert.over) if alert.over is not None else 300.0
    out: Subjects = {}
    for d in r.session.project.config.destinations:
        if isinstance(d, EventsDestination):
            lag = events.waiting(r.session.warehouse, d, r.now)["lag_seconds"]
            if lag > limit:
                out[f"destination:{d.name}"] = round(lag)
    return out


SIGNALS: dict[str, Callable[[Readings, Alert], Subjects]] = {
    "source_failed": _source_failed,
    "source_stale": _source_stale,
    "quarantine_growth": _quarantine_growth,
    "run_failed": _run_failed,
    "delivery_failures": _delivery_failures,
    "complaint_rate": _complaint_rate,
    "bounce_rate": _bounce_rate,
    "tracking_plan_broken": _tracking_plan_broken,
    "anomaly": _anomaly,
    "quality_flagged": _quality_flagged,
    "reconcile_flagged": _reconcile_flagged,
    "removals_stranded": _removals_stranded,
    "forwarding_lag": _forwarding_lag,
}
"""Every signal of :data:`personify.config.ALERT_SIGNALS`, by name."""
