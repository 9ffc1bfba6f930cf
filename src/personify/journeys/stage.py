"""The ``journeys`` and ``delivery`` stages of ``personify run``, and the project's journeys.

* ``journeys`` — load and check every ``journeys/*.yml`` (a broken file stops the stage before
  anything changes), then enter and advance every journey to ``--now``
  (:mod:`personify.journeys.engine`), deciding the emails of due send steps;
* ``delivery`` — send every queued email due at ``--now`` (:mod:`personify.journeys.send`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from personify import clock
from personify.audiences.schedule import parse_duration
from personify.config import OutboxDelivery, Project
from personify.delivery.outbox import file_name
from personify.errors import DefinitionError
from personify.journeys.definitions import Journey, load_journeys
from personify.journeys.engine import Context, JourneyCounts, advance
from personify.journeys.send import SendCounts, deliver
from personify.messages import template_store
from personify.privacy.hashing import optional_key
from personify.session import Session
from personify.warehouse.base import Warehouse
from personify.warehouse.retry import retry_conflicts

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]
CONFLICT_PATIENCE = 30.0
"""Seconds a journey's advance keeps retrying write-write conflicts (continuous mode's passes
enter and exit instances meanwhile): each of its transactions is idempotent, so it runs again."""


def project_journeys(project: Project) -> list[Journey]:
    """The project's journeys (``journeys.folder``), checked (cached while files are unchanged)."""
    settings = project.config.journeys
    folder = project.path(settings.folder)
    stamp: Stamp = ()
    if folder.is_dir():
        stamp = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
        )
    return list(_load(folder, stamp, settings.lookback, settings.purpose, project.root))


@functools.lru_cache(maxsize=32)
def _load(
    folder: Path, stamp: Stamp, lookback: str, purpose: str, root: Path
) -> tuple[Journey, ...]:
    return tuple(
        load_journeys(folder, lookback=parse_duration(lookback), purpose=purpose, root=root)
    )


def check_templates(project: Project, journeys: list[Journey]) -> None:
    """Every send step names a template of the project, else a DefinitionError naming the
    journey file, the step's line and key (before anything is decided)."""
    known = set(template_store(project).names())
    for journey in journeys:
        for index, step in enumerate(journey.steps):
            if step.kind != "send":
                continue
            named = [(step.template, step.line, f"steps[{index}].send")]
            for n, variant in enumerate(step.experiment.variants if step.experiment else ()):
                if variant.template is not None:
                    where = f"steps[{index}].variants[{n}].template"
                    named.append((variant.template, variant.line, where))
            for template, line, key in named:
                if template not in known:
                    raise DefinitionError(
                        f"no template {template!r} in templates/",
                        file=journey.file,
                        line=line,
                        key=key,
                        hint="templates: " + (", ".join(sorted(known)) or "none"),
                    )


def run_journeys(wh: Warehouse, project: Project, journeys: list[Journey]) -> list[JourneyCounts]:
    """Enter and advance every journey to ``--now``."""
    now = clock.now()
    context = Context(
        default_zone=project.config.timezone,
        source_kinds=dict(project.config.identity.source_kinds),
        suppression_key=optional_key(project),
    )
    results = []
    for journey in journeys:
        counts = retry_conflicts(
            functools.partial(advance, wh, journey, now=now, context=context),
            patience=CONFLICT_PATIENCE,
        )
        log.info(
            "journey %s: +%d entered, %d decided, %d active",
            journey.name,
            counts.entered,
            counts.decided,
            counts.active,
        )
        results.append(counts)
    return results


@contextlib.contextmanager
def exclusive(wh: Warehouse, what: str) -> Iterator[bool]:
    """Whether this process holds ``what`` (``journeys`` or ``delivery``) for this warehouse.

    Engines shared by several processes (PostgreSQL) serialize on a session-level advisory
    lock keyed by the warehouse's schema as the server names it (``current_schema()``; advisory
    locks are per database) — not by the URL, which processes of one warehouse may spell
    differently (another host name, other credentials) — tried without waiting: a second
    ``personify run`` skips the stage instead of racing the first (it would double no email —
    keys are unique and transports idempotent — but would render twice). Single-process
    engines (DuckDB) have one process: there, threads of it (``serve``'s journey tick and a
    forwarded ``personify run``) take turns on an in-process lock (re-entrant in one thread)."""
    if not wh.capabilities.advisory_lock:
        with _local_lock(wh, what):
            yield True
        return
    schema = wh.scalar("SELECT current_schema()")
    digest = hashlib.sha256(f"personify:{what}:{schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    held = bool(wh.scalar("SELECT pg_try_advisory_lock(?)", [key]))
    try:
        yield held
    finally:
        if held:
            wh.scalar("SELECT pg_advisory_unlock(?)", [key])


_LOCAL: dict[tuple[str, str], threading.RLock] = {}
_LOCAL_GUARD = threading.Lock()


def _local_lock(wh: Warehouse, what: str) -> threading.RLock:
    with _LOCAL_GUARD:
        return _LOCAL.setdefault((what, wh.url), threading.RLock())


def journeys_stage(session: Session) -> dict[str, int]:
    """The pipeline's ``journeys`` step: counts summed over journeys, plus per journey
    ``<name>.decided``."""
    journeys = project_journeys(session.project)
    check_templates(session.project, journeys)
    with exclusive(session.warehouse, "journeys") as held:
        if not held:
            log.warning("journeys: another process is advancing them; skipped")
            return {"journeys": len(journeys), "busy": 1}
        results = run_journeys(session.warehouse, session.project, journeys)
    out = {
        "journeys": len(journeys),
        "entered": sum(r.entered for r in results),
        "decided": sum(r.decided for r in results),
        "skipped": sum(sum(r.skipped.values()) for r in results),
        "goal_reached": sum(r.goal for r in results),
        "completed": sum(r.completed for r in results),
        "active": sum(r.active for r in results),
    }
    for r in results:
        out[f"{r.journey}.decided"] = r.decided
    return out


def send_due(session: Session, *, limit: int | None = None) -> SendCounts:
    """Send the queued emails due at ``--now``."""
    journeys = project_journeys(session.project)
    return deliver(session.warehouse, session.project, journeys, now=clock.now(), limit=limit)


def delivery_stage(session: Session) -> dict[str, int]:
    """The pipeline's ``delivery`` step: sent, held and skipped counts, plus per journey
    ``<name>.sent``."""
    with exclusive(session.warehouse, "delivery") as held:
        if not held:
            log.warning("delivery: another process is sending; skipped")
            return {"sent": 0, "busy": 1}
        counts = send_due(session)
    if counts.stopped:
        log.warning("delivery stopped early: %s (the rest stay queued)", counts.stopped)
    out = counts.as_dict()
    for journey, n in sorted(counts.by_journey.items()):
        out[f"{journey}.sent"] = n
    return out


def email_summary(session: Session, *, prefer: str | None = None) -> dict[str, Any]:
    """Messages by journey and status, and one sent email to open (an ``.eml`` of the outbox,
    from journey ``prefer`` when it sent any): ``{"sent", "by_journey", "example"}``."""
    wh, project = session.warehouse, session.project
    by_journey: dict[str, dict[str, int]] = {}
    for journey, status, n in wh.fetch(
        "SELECT coalesce(journey, ''), status, count(*) FROM messages GROUP BY 1, 2 ORDER BY 1, 2"
    ):
        by_journey.setdefault(str(journey), {})[str(status)] = int(n)
    sent = sum(s.get("sent", 0) for s in by_journey.values())
    example = None
    delivery = project.config.delivery
    if isinstance(delivery, OutboxDelivery) and sent:
        rows = wh.fetch(
            "SELECT idempotency_key FROM messages WHERE status = 'sent' "
            "ORDER BY CASE WHEN journey = ? THEN 0 ELSE 1 END, sent_at, idempotency_key LIMIT 1",
            [prefer or ""],
        )
        if rows:
            path = project.path(delivery.path) / file_name(str(rows[0][0]))
            example = str(path) if path.exists() else None
    return {"sent": sent, "by_journey": by_journey, "example": example}
