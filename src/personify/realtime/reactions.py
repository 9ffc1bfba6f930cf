"""What continuous mode does after a customer's profile changed: that customer's real-time
segments, rules and journey entries (:func:`react`), and the journeys' clock (:func:`tick`).

Per customer, with the batch path's own SQL restricted to the customers touched (a temporary
table of their ids), so the two paths cannot disagree:

* segments whose header says ``refresh: real-time`` (the default) and that rank customers
  against each other (``ORDER BY … LIMIT``, window functions:
  :attr:`~personify.audiences.segments.Segment.ranks`) — refreshed whole, first: one customer's
  change moves others in or out of them; the customers they moved are reacted for too;
* the other ``refresh: real-time`` segments —
  :func:`personify.audiences.memberships.refresh_for`: entries and exits, recorded in
  ``audience_changes`` like a batch refresh's. A segment the warehouse refuses keeps its
  memberships and is recorded in ``segment_errors`` (``personify status`` shows it) as the batch
  records it; the other segments, the rules and the journeys go on
  (:func:`~personify.audiences.memberships.refresh_for_isolated`). One that succeeds clears
  the failure recorded for it, as a batch refresh does — a refused query, or its own earlier
  timeout (``real-time-timeout``) — but a whole refresh over the cap or its timeout, which only
  the next whole refresh can judge (decided by the recorded ``kind``:
  :func:`~personify.audiences.memberships.cleared_by_real_time`);
* every rule — :func:`personify.audiences.batch.write_tags` with ``only``;
* journeys triggered by an event, a segment entry or a tag —
  :func:`personify.journeys.engine.enter` with ``only`` (a ``Product Added`` enters its
  journey in the same pass as the event reaches the profile). Broadcasts stay with the batch run.

:func:`tick` advances the journeys' instances that are due (a wait that expired, an instance
just entered) and sends the queued emails that are due — what ``personify run``'s journeys and
delivery stages do, without the full entry scan. On PostgreSQL it holds the same advisory locks
as those stages, so one process at a time does it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final

import pyarrow as pa

from personify import clock
from personify.session import Session
from personify.warehouse.base import quote
from personify.warehouse.schema import Column, Table

if TYPE_CHECKING:
    from personify.audiences.segments import Segment

log = logging.getLogger("personify.realtime")

ONLY: Final = Table("_personify_rt_customers", (Column("customer_id", "VARCHAR"),))
"""The temporary table of the customers one pass reacts for."""


@dataclass
class Reaction:
    """What one pass did for its customers."""

    customers: int = 0
    entered: int = 0
    """Segment entries."""
    exited: int = 0
    """Segment exits."""
    tags_added: int = 0
    tags_removed: int = 0
    journeys_entered: dict[str, int] = field(default_factory=dict)
    segments_failed: list[str] = field(default_factory=list)
    """Segments the warehouse refused (kept their memberships; in ``segment_errors``)."""


def react(
    session: Session, customer_ids: Sequence[str], *, now: datetime | None = None
) -> Reaction:
    """Bring the real-time segments, the tags and the journey entries of ``customer_ids`` up to
    date at ``now`` (default: the clock). Applying it twice changes nothing."""
    from personify.audiences.batch import write_tags
    from personify.audiences.memberships import (
        clear_real_time_failure,
        cleared_by_real_time,
        refresh_for_isolated,
    )
    from personify.audiences.stage import project_rules, project_segments
    from personify.journeys.engine import enter
    from personify.journeys.stage import project_journeys

    at = now or clock.now()
    wh, project = session.warehouse, session.project
    ids = sorted({str(c) for c in customer_ids})
    done = Reaction(customers=len(ids))
    if not ids:
        return done
    real_time = [s for s in project_segments(project) if s.refresh.mode == "real-time"]
    segments = [s for s in real_time if s.real_time == "per customer"]
    ranked = [s for s in real_time if s.real_time == "whole"]
    if ranked:
        ids = sorted({*ids, *_refresh_whole(session, ranked, at, done)})
        done.customers = len(ids)
    rules = project_rules(project)
    journeys = [
        j
        for j in project_journeys(project)
        if j.enabled and j.trigger.kind in ("event", "segment", "tag")
    ]
    if not (segments or rules or journeys):
        return done
    name = quote(ONLY.name)
    wh.execute(f"DROP TABLE IF EXISTS {name}")
    wh.execute(f"CREATE TEMP TABLE {name} (customer_id VARCHAR)")
    try:
        wh.load(ONLY, pa.table({"customer_id": pa.array(ids, pa.string())}))
        timeout = project.config.audiences.timeout_seconds
        failing = cleared_by_real_time(wh) if segments else set()
        for segment in segments:
            got = refresh_for_isolated(wh, segment, ONLY.name, now=at, timeout_s=timeout)
            if not isinstance(got, tuple):
                # (the file and the error's kind only: the error is masked in segment_errors)
                log.warning(
                    "real-time refresh of segment %s (%s) failed (%s); it kept its "
                    "memberships: personify status shows why",
                    got.segment,
                    got.file,
                    got.kind,
                )
                done.segments_failed.append(got.segment)
                continue
            if segment.name in failing:  # it runs again: status stops showing the old error
                clear_real_time_failure(wh, segment.name)  # (not one recorded since)
            done.entered += got[0]
            done.exited += got[1]
        if rules:
            tags = write_tags(wh, rules, now=at, only=ONLY.name)
            done.tags_added, done.tags_removed = tags.added, tags.removed
        for journey in journeys:  # after segments and tags: their entries trigger journeys
            n = enter(wh, journey, now=at, only=ONLY.name)
            if n:
                done.journeys_entered[journey.name] = n
    finally:
        wh.execute(f"DROP TABLE IF EXISTS {name}")
    return done


def _refresh_whole(
    session: Session, ranked: list[Segment], at: datetime, done: Reaction
) -> set[str]:
    """Refresh the real-time segments that rank customers against each other whole, as a batch
    run does (:func:`~personify.audiences.memberships.refresh_isolated`: a failure keeps the
    segment's memberships and is recorded as a whole refresh's): one customer's change moves
    others in or out of them. Returns the customers they moved, whom the pass reacts for too
    (their journeys, their own segments and tags)."""
    from personify.audiences.memberships import refresh_isolated

    wh, settings = session.warehouse, session.project.config.audiences
    busy: list[str] = []
    results, failed = refresh_isolated(
        wh,
        ranked,
        now=at,
        timeout_s=settings.timeout_seconds,
        max_members=settings.max_members,
        busy=busy,
    )
    for name in busy:  # (a personify run holds it to its commit: minutes at 1M customers)
        log.info(
            "ranking segment %s is being refreshed whole by another process: this pass leaves "
            "it to that refresh (the next pass refreshes it again)",
            name,
        )
    for failure in failed:
        log.warning(
            "real-time refresh of ranking segment %s (%s) failed (%s); it kept its "
            "memberships: personify status shows why",
            failure.segment,
            failure.file,
            failure.kind,
        )
        done.segments_failed.append(failure.segment)
    moved = [r.segment for r in results if r.entered or r.exited]
    for result in results:
        done.entered += result.entered
        done.exited += result.exited
    if not moved:
        return set()
    rows = wh.fetch(
        "SELECT DISTINCT customer_id FROM audience_changes WHERE kind = 'segment' AND "
        f"changed_at = ? AND name IN ({', '.join('?' for _ in moved)})",
        [at, *moved],
    )
    return {str(r[0]) for r in rows}


@dataclass
class Tick:
    """What one tick did."""

    advanced: int = 0
    """Journeys that had instances due."""
    decided: int = 0
    sent: int = 0
    busy: bool = False
    """Another process holds the journeys or delivery lock (it does the work)."""
    broken: list[str] = field(default_factory=list)
    """Journeys left alone: a template they send is broken (the run reports why)."""


def tick(session: Session, *, now: datetime | None = None) -> Tick:
    """Advance the due journey instances and send the due emails at ``now`` — but those of
    journeys that send a broken template, which wait as ``personify run`` leaves them
    (:func:`~personify.journeys.stage.runnable_journeys`)."""
    from personify.journeys.engine import Context, advance
    from personify.journeys.send import deliver
    from personify.journeys.stage import exclusive, locked, project_journeys, runnable_journeys
    from personify.privacy.hashing import optional_key

    at = now or clock.now()
    wh, project = session.warehouse, session.project
    every = project_journeys(project)
    done = Tick()
    if not every:
        return done
    journeys, broken = runnable_journeys(project, every, quiet=True)  # (once a second)
    done.broken = list(broken)
    context = Context(
        default_zone=project.config.timezone,
        source_kinds=dict(project.config.identity.source_kinds),
        suppression_key=optional_key(project),
    )
    with exclusive(wh, "journeys") as held:
        if held:
            for journey in journeys:
                counts = advance(wh, journey, now=at, context=context, entering=False)
                done.advanced += bool(
                    counts.decided
                    or counts.completed
                    or counts.goal
                    or counts.left_segment
                    or counts.waited_event
                    or counts.waited_timeout
                )
                done.decided += counts.decided
        else:
            done.busy = True
    due = wh.fetch(
        "SELECT 1 FROM messages WHERE status = 'queued' AND (send_after IS NULL OR "
        "send_after <= ?) LIMIT 1",
        [at],
    )
    if due:
        with locked(wh, "delivery") as lock:
            if lock is not None:
                done.sent = deliver(
                    wh, project, journeys, now=at, held=lock.held, waiting=frozenset(broken)
                ).sent
            else:
                done.busy = True
    return done
