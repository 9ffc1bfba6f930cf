"""``run()``: one full cycle through the stages, in the order data moves. No logic of its own.

Each stage is a function ``(session) -> dict[str, int]`` of counts; later stages (identity,
profiles, audiences, journeys, delivery) are appended to :data:`STAGES` as they are built. A
stage that did its work but for parts that failed raises
:class:`~personify.errors.StageIncomplete`: its counts and problems are recorded, the next
stages run, and the run ends ``failed`` (:attr:`RunReport.problems`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from personify import clock
from personify.audiences import audiences_stage
from personify.destinations import destinations_stage
from personify.errors import StageIncomplete
from personify.identity import identity_stage
from personify.journeys import delivery_stage, journeys_stage
from personify.offers import offers_stage
from personify.privacy.stage import privacy_stage
from personify.profiles import profiles_stage
from personify.quality.rules import quality_stage
from personify.session import Session
from personify.sources import sync_sources
from personify.warehouse.schema import PIPELINE_RUNS

Stage = Callable[[Session], dict[str, int]]
log = logging.getLogger("personify.pipeline")


def _sync(session: Session) -> dict[str, int]:
    totals: dict[str, int] = {}
    for result in sync_sources(session):
        for key, value in result.counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


STAGES: tuple[tuple[str, Stage], ...] = (
    ("sync", _sync),
    ("identity", identity_stage),
    ("profiles", profiles_stage),
    ("quality", quality_stage),
    ("privacy", privacy_stage),
    ("audiences", audiences_stage),
    ("offers", offers_stage),
    ("journeys", journeys_stage),
    ("delivery", delivery_stage),
    ("destinations", destinations_stage),
)
"""The stages in order: name and function."""


@dataclass
class StageReport:
    name: str
    seconds: float
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    """What failed in a stage that went on (:class:`~personify.errors.StageIncomplete`)."""


def _alerts(session: Session, report: RunReport) -> None:
    """Evaluate the alerts after the run is recorded (a failed run included); an alert that
    cannot be evaluated never fails the run. With no alert configured it still settles what is
    queued for alerts removed from ``personify.yml`` (``dropped``; the report has no
    ``alerts``)."""
    from personify.alerts import check_alerts

    try:
        result = check_alerts(session, now=report.now)
    except Exception as e:
        log.error(
            "alerts could not be evaluated (%s): `personify alerts check` says why",
            type(e).__name__,
        )
        return
    if not session.project.config.alerts:
        return
    report.alerts = {
        "firing": result.firing,
        "sent": result.sent,
        "failed": result.failed,
        "given_up": result.given_up,
    }


@dataclass
class RunReport:
    run_id: str
    now: datetime
    stages: list[StageReport] = field(default_factory=list)
    alerts: dict[str, Any] | None = None
    """After the run, the alerts' evaluation: ``firing`` (names), notifications ``sent`` and
    ``failed`` (None: no alerts, or they could not be evaluated)."""

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def problems(self) -> list[str]:
        """Each stage's problems, as ``stage: problem`` (empty: the run succeeded)."""
        return [f"{s.name}: {p}" for s in self.stages for p in s.problems]


def run(
    session: Session,
    *,
    stages: tuple[tuple[str, Stage], ...] = STAGES,
    on_stage: Callable[[str], None] | None = None,
) -> RunReport:
    """Run every stage once, at :func:`personify.clock.now`; record the run in ``pipeline_runs``."""
    wh = session.warehouse
    report = RunReport(run_id=uuid.uuid4().hex, now=clock.now())
    started = datetime.now(UTC)  # wall clock; report.now is the evaluated instant
    wh.execute(
        f"INSERT INTO {PIPELINE_RUNS.name} (run_id, started_at, now, status) VALUES (?, ?, ?, ?)",
        [report.run_id, started, report.now, "running"],
    )
    status = "failed"
    try:
        for name, stage in stages:
            if on_stage:
                on_stage(name)
            t0 = time.perf_counter()
            try:
                counts, problems = stage(session), []
            except StageIncomplete as e:
                counts, problems = e.counts, e.problems
            report.stages.append(StageReport(name, time.perf_counter() - t0, counts, problems))
        status = "failed" if report.problems else "succeeded"
    finally:
        stats = {
            s.name: {"seconds": round(s.seconds, 3), **s.counts}
            | ({"problems": s.problems} if s.problems else {})
            for s in report.stages
        }
        wh.execute(
            f"UPDATE {PIPELINE_RUNS.name} SET finished_at = ?, status = ?, stats = ? "
            "WHERE run_id = ?",
            [datetime.now(UTC), status, msgspec.json.encode(stats).decode(), report.run_id],
        )
        _alerts(session, report)
    return report
