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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from personify import clock
from personify.audiences.schedule import parse_duration
from personify.audiences.stage import project_segments
from personify.config import OutboxDelivery, Project
from personify.delivery.outbox import file_name
from personify.errors import DefinitionError, PersonifyError, StageIncomplete
from personify.journeys.definitions import Journey, load_journeys
from personify.journeys.engine import Context, JourneyCounts, advance
from personify.journeys.send import SendCounts, deliver
from personify.messages import RenderError, TemplateStore, template_store
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
    """The project's journeys (``journeys.folder``), checked (cached while files are unchanged)
    — against the project's segments too: a segment trigger, broadcast or ``exit_when`` naming
    none of them is refused."""

    settings = project.config.journeys
    folder = project.path(settings.folder)
    stamp: Stamp = ()
    if folder.is_dir():
        stamp = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
        )
    if not stamp:
        return []
    segments = tuple(sorted(s.name for s in project_segments(project)))
    return list(_load(folder, stamp, settings.lookback, settings.purpose, project.root, segments))


@functools.lru_cache(maxsize=32)
def _load(
    folder: Path,
    stamp: Stamp,
    lookback: str,
    purpose: str,
    root: Path,
    segments: tuple[str, ...],
) -> tuple[Journey, ...]:
    return tuple(
        load_journeys(
            folder,
            lookback=parse_duration(lookback),
            purpose=purpose,
            root=root,
            segments=segments,
        )
    )


def check_templates(project: Project, journeys: list[Journey]) -> None:
    """Every send step names a template of the project, and every language version of it
    (``NAME.liquid``, ``NAME.fr.liquid`` …) parses — body, subject, layout and the partials it
    renders — else a DefinitionError naming the journey file, the step's line and key, and the
    template file and line at fault (the first journey's, in order: :func:`template_problems`).
    ``personify journeys check`` refuses on it; the run skips those journeys only."""
    for problem in template_problems(project, journeys).values():
        raise problem


def template_problems(project: Project, journeys: list[Journey]) -> dict[str, DefinitionError]:
    """Per journey whose send steps name a template that is missing or broken in one of its
    language versions (:func:`check_templates`), its first problem — a DefinitionError naming
    the journey file, the step's line and key, and the template file and line at fault —
    in journey order. Each template is checked once."""
    store = template_store(project)
    known = set(store.names())
    checked: dict[str, RenderError | None] = {}
    problems: dict[str, DefinitionError] = {}
    for journey in journeys:
        for template, line, key in _sent(journey):
            if template not in known:
                problems[journey.name] = DefinitionError(
                    f"no template {template!r} in templates/",
                    file=journey.file,
                    line=line,
                    key=key,
                    hint=_missing_hint(store, template, known),
                )
                break
            if template not in checked:
                try:
                    store.check(template)
                    checked[template] = None
                except RenderError as e:
                    checked[template] = e
            failed = checked[template]
            if failed is not None:
                problems[journey.name] = DefinitionError(
                    failed.message, file=journey.file, line=line, key=key, hint=failed.hint
                )
                break
    return problems


def _sent(journey: Journey) -> Iterator[tuple[str, int | None, str]]:
    """Each template ``journey``'s send steps name: the name, the step's line and key."""
    for index, step in enumerate(journey.steps):
        if step.kind != "send":
            continue
        assert step.template is not None
        yield step.template, step.line, f"steps[{index}].send"
        for n, variant in enumerate(step.experiment.variants if step.experiment else ()):
            if variant.template is not None:
                yield variant.template, variant.line, f"steps[{index}].variants[{n}].template"


def _missing_hint(store: TemplateStore, template: str, known: set[str]) -> str:
    """What to name instead of ``template``: its default when it is a language version's name
    (``welcome.fr``), else the templates there are."""
    base, _, suffix = template.rpartition(".")
    if base in known and suffix in store.variants(base):
        return (
            f"{template}.liquid is the {suffix} language version of {base}: send {base!r} "
            f"(recipients whose locale is {suffix} get it)"
        )
    return "templates: " + (", ".join(sorted(known)) or "none")


def run_journeys(
    wh: Warehouse,
    project: Project,
    journeys: list[Journey],
    *,
    held: Callable[[], bool] | None = None,
) -> list[JourneyCounts]:
    """Enter and advance every journey to ``--now``. ``held``: whether this process still holds
    the journeys lock (:meth:`Lock.held`), asked before each journey — a lock lost with its
    connection stops here (the journeys not advanced yet wait for the next run or the process
    that holds it now)."""
    now = clock.now()
    context = Context(
        default_zone=project.config.timezone,
        source_kinds=dict(project.config.identity.source_kinds),
        suppression_key=optional_key(project),
    )
    results = []
    for journey in journeys:
        if held is not None and not held():
            log.warning("journeys: the lock was lost with its warehouse connection; stopped")
            break
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
    """Whether this process holds ``what`` (``journeys`` or ``delivery``) for this warehouse
    (:func:`locked`, as a flag)."""
    with locked(wh, what) as lock:
        yield lock is not None


class Lock:
    """A stage's lock this process took (:func:`locked`); :meth:`held` says whether it still
    holds it."""

    def __init__(self, wh: Warehouse, what: str, key: int | None, pid: int | None) -> None:
        self.wh, self.what, self.key, self.pid = wh, what, key, pid

    def held(self) -> bool:
        """Whether the lock is still this process's. An in-process lock always is. A PostgreSQL
        advisory lock belongs to the connection (the server session) that took it: when that
        connection dropped — a server restart, a network cut, an idle timeout — the server
        released it, and the warehouse's next statement runs on a new connection that does not
        hold it (another process may have taken it since). So: the statement this asks on must
        run on the same server session (its ``pg_backend_pid()``), which still holds the lock;
        a statement that fails (the dropped connection) says no too."""
        if self.key is None:
            return True
        try:
            row = self.wh.fetch(
                "SELECT pg_backend_pid(), count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                "AND ((CAST(classid AS BIGINT) << 32) | CAST(objid AS BIGINT)) = ?",
                [self.key],
            )[0]
        except PersonifyError as e:
            log.warning("%s: the lock's connection failed (%s)", self.what, type(e).__name__)
            return False
        return row[0] == self.pid and int(row[1]) > 0


@contextlib.contextmanager
def locked(wh: Warehouse, what: str) -> Iterator[Lock | None]:
    """The lock ``what`` (``journeys`` or ``delivery``) of this warehouse, when this process
    gets it; ``None`` when another one holds it.

    Engines shared by several processes (PostgreSQL) serialize on a session-level advisory
    lock keyed by the warehouse's schema as the server names it (``current_schema()``; advisory
    locks are per database) — not by the URL, which processes of one warehouse may spell
    differently (another host name, other credentials) — tried without waiting: a second
    ``personify run`` skips the stage instead of racing the first (it would double no email —
    keys are unique and transports idempotent — but would render twice). The lock lives as long
    as the connection that took it: work that runs long checks :meth:`Lock.held` as it goes (the
    send loop, before each batch) and stops when it was lost. Single-process engines (DuckDB)
    have one process: there, threads of it (``serve``'s journey tick and a forwarded ``personify
    run``) take turns on an in-process lock (re-entrant in one thread)."""
    if not wh.capabilities.advisory_lock:
        with _local_lock(wh, what):
            yield Lock(wh, what, None, None)
        return
    schema = wh.scalar("SELECT current_schema()")
    digest = hashlib.sha256(f"personify:{what}:{schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    row = wh.fetch("SELECT pg_try_advisory_lock(?), pg_backend_pid()", [key])[0]
    lock = Lock(wh, what, key, int(row[1])) if row[0] else None
    try:
        yield lock
    finally:
        if lock is not None and lock.held():  # a lost lock is not this process's to release
            with contextlib.suppress(PersonifyError):
                wh.scalar("SELECT pg_advisory_unlock(?)", [key])


_LOCAL: dict[tuple[str, str], threading.RLock] = {}
_LOCAL_GUARD = threading.Lock()


def _local_lock(wh: Warehouse, what: str) -> threading.RLock:
    with _LOCAL_GUARD:
        return _LOCAL.setdefault((what, wh.url), threading.RLock())


BROKEN_HINT: Final = (
    "fix each template file named; `personify journeys check` checks every journey's templates "
    "without a warehouse"
)


def runnable_journeys(
    project: Project, journeys: list[Journey], *, quiet: bool = False
) -> tuple[list[Journey], dict[str, DefinitionError]]:
    """``journeys`` without those that send a missing or broken template
    (:func:`template_problems`), and those problems by journey (each logged unless ``quiet``:
    the journey's file and line and the template's — no personal data). A broken template
    stops only the journeys that send it: they neither advance nor send (their queued emails
    wait) until it is fixed; the others go on."""
    broken = template_problems(project, journeys)
    for name, problem in broken.items() if not quiet else ():
        log.warning("journey %s skipped: %s", name, problem)
    return [j for j in journeys if j.name not in broken], broken


def broken_journeys(broken: dict[str, DefinitionError], counts: dict[str, int]) -> StageIncomplete:
    """The error of a stage that went on without the ``broken`` journeys: each one's words —
    the journey file:line and key, the template file:line, the hint — as a problem."""
    return StageIncomplete(
        f"{len(broken)} journey(s) skipped, a template they send is broken: "
        + ", ".join(sorted(broken)),
        counts=counts,
        problems=[str(p) for p in broken.values()],
        hint=BROKEN_HINT,
    )


def journeys_stage(session: Session) -> dict[str, int]:
    """The pipeline's ``journeys`` step: counts summed over journeys, plus per journey
    ``<name>.decided``. A journey that sends a missing or broken template is skipped
    (:func:`runnable_journeys`); the others advance, and the stage then raises
    :class:`~personify.errors.StageIncomplete` naming it (``journeys_failed`` counted)."""
    every = project_journeys(session.project)
    journeys, broken = runnable_journeys(session.project, every)
    with locked(session.warehouse, "journeys") as lock:
        if lock is None:
            log.warning("journeys: another process is advancing them; skipped")
            busy = {"journeys": len(every), "busy": 1}
            if broken:
                raise broken_journeys(broken, busy | {"journeys_failed": len(broken)})
            return busy
        results = run_journeys(session.warehouse, session.project, journeys, held=lock.held)
    out = {
        "journeys": len(every),
        "entered": sum(r.entered for r in results),
        "decided": sum(r.decided for r in results),
        "skipped": sum(sum(r.skipped.values()) for r in results),
        "goal_reached": sum(r.goal for r in results),
        "left_segment": sum(r.left_segment for r in results),
        "wait_for_event": sum(r.waited_event for r in results),
        "wait_for_timeout": sum(r.waited_timeout for r in results),
        "completed": sum(r.completed for r in results),
        "active": sum(r.active for r in results),
    }
    if len(results) < len(journeys):
        out["lock_lost"] = 1
    for r in results:
        out[f"{r.journey}.decided"] = r.decided
    if broken:
        out["journeys_failed"] = len(broken)
        raise broken_journeys(broken, out)
    return out


def send_due(session: Session, *, limit: int | None = None, lock: Lock | None = None) -> SendCounts:
    """Send the queued emails due at ``--now`` (stopping if the delivery ``lock`` is lost). The
    emails of journeys whose template is broken (:func:`runnable_journeys`) stay queued."""
    journeys, broken = runnable_journeys(session.project, project_journeys(session.project))
    return deliver(
        session.warehouse,
        session.project,
        journeys,
        now=clock.now(),
        limit=limit,
        held=lock.held if lock is not None else None,
        waiting=frozenset(broken),
    )


def delivery_stage(session: Session) -> dict[str, int]:
    """The pipeline's ``delivery`` step: sent, held and skipped counts, plus per journey
    ``<name>.sent``."""
    with locked(session.warehouse, "delivery") as lock:
        if lock is None:
            log.warning("delivery: another process is sending; skipped")
            return {"sent": 0, "busy": 1}
        counts = send_due(session, lock=lock)
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
