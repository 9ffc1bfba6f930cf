"""The audiences stage and the project-level operations the CLI and server call.

``audiences_stage(session)`` (the pipeline's ``audiences`` step): load and check every segment and
rule first (a broken file stops the stage before anything changes), refresh the segments that
are due at ``--now``, close the memberships of segments that no longer exist, then evaluate every
rule over every customer and bring ``customer_tags`` up to date. A segment the warehouse refuses
when it runs (an error in its SQL, its cap, its timeout) keeps its memberships; the others are
refreshed, and the stage ends with :class:`~personify.errors.StageIncomplete` naming it
(:func:`failed_segments`). ``personify segments refresh`` (:func:`refresh`) does the same. Each
failure stays in ``segment_errors`` — ``personify status`` shows it — until the segment refreshes.
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlglot import exp

from personify import clock
from personify.audiences.batch import TagCounts, write_tags
from personify.audiences.lists import blind_list_members
from personify.audiences.memberships import (
    RefreshResult,
    SegmentFailure,
    last_refreshed,
    refresh_isolated,
    retire_segments,
)
from personify.audiences.relations import Relation, check_relations, project_relations
from personify.audiences.rules import Rule, load_rules
from personify.audiences.segments import Segment, load_segments
from personify.config import Project
from personify.errors import NotFound, StageIncomplete
from personify.privacy.masking import mask_text
from personify.session import Session
from personify.warehouse.base import Warehouse

log = logging.getLogger(__name__)


def project_segments(project: Project) -> list[Segment]:
    """The project's segments (``audiences.segments`` folder), checked (cached while the files
    are unchanged)."""
    settings = project.config.audiences
    folder = project.path(settings.segments)
    relations = project_relations(project)
    return list(
        _segments(folder, _stamp(folder, "*.sql"), settings.dialect, project.root, relations)
    )


def project_rules(project: Project) -> list[Rule]:
    """The project's rules (``audiences.rules`` folder), checked, in evaluation order (cached
    while the files are unchanged: the real-time path may ask for every event)."""
    settings = project.config.audiences
    folder = project.path(settings.rules)
    return list(_rules(folder, _stamp(folder, "*.y*ml"), settings.dialect, project.root))


Stamp = tuple[tuple[str, int, int], ...]


def _stamp(folder: Path, pattern: str) -> Stamp:
    """Name, size and modification time of every definition file: the cache key."""
    if not folder.is_dir():
        return ()
    return tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.glob(pattern))
    )


@functools.lru_cache(maxsize=32)
def _segments(
    folder: Path, stamp: Stamp, dialect: str, root: Path, relations: tuple[Relation, ...]
) -> tuple[Segment, ...]:
    return tuple(load_segments(folder, default_dialect=dialect, root=root, relations=relations))


def relations_read(segments: list[Segment]) -> list[Relation]:
    """The relations (``relations:``) any of ``segments`` reads, once each."""
    return list(dict.fromkeys(r for s in segments for r in s.relations))


@functools.lru_cache(maxsize=32)
def _rules(folder: Path, stamp: Stamp, dialect: str, root: Path) -> tuple[Rule, ...]:
    return tuple(load_rules(folder, default_dialect=dialect, root=root))


def find_segment(project: Project, name: str) -> Segment:
    """The segment called ``name``. Raises :class:`NotFound` listing the others."""
    segments = project_segments(project)
    for segment in segments:
        if segment.name == name:
            return segment
    known = ", ".join(s.name for s in segments) or "none"
    raise NotFound(f"no segment named {name!r} (segments: {known})")


def refresh(
    session: Session, segments: list[Segment], *, force: bool = False
) -> tuple[list[RefreshResult], list[SegmentFailure]]:
    """Refresh ``segments`` that are due at ``--now`` (all of them with ``force``) as the
    audiences stage does (:func:`~personify.audiences.memberships.refresh_isolated`): a segment
    the warehouse refuses keeps its memberships and is recorded, the others are refreshed in
    one transaction. Returns the refreshes and the failures (:func:`failed_segments` words
    them)."""
    wh, settings, now = session.warehouse, session.project.config.audiences, clock.now()
    last = last_refreshed(wh) if not force else {}
    due = [s for s in segments if force or s.refresh.is_due(last.get(s.name), now)]
    check_relations(wh, relations_read(due))  # a missing table names its personify.yml key
    results, failed = refresh_isolated(
        wh, due, now=now, timeout_s=settings.timeout_seconds, max_members=settings.max_members
    )
    _log_refreshed(results)
    return results, failed


FAILED_HINT: Final = (
    "fix each file named; `personify segments preview NAME` runs a segment without changing "
    "any membership"
)


def failed_segments(failed: list[SegmentFailure], counts: dict[str, int]) -> StageIncomplete:
    """The error of a refresh that went on without ``failed`` (``personify run``'s audiences
    stage and ``personify segments refresh`` alike): each failure's words — its file, the
    engine's message masked (values: see :meth:`Segment.running`), its hint — as a problem."""
    return StageIncomplete(
        f"{len(failed)} segment(s) failed on the warehouse and kept their memberships: "
        + ", ".join(f.file for f in failed),
        counts=counts,
        problems=[mask_text(str(f.error)) for f in failed],
        hint=FAILED_HINT,
    )


def _log_refreshed(results: list[RefreshResult]) -> None:
    for result in results:
        log.info(
            "segment %s: %d members (+%d, -%d) in %.2f s",
            result.segment,
            result.members,
            result.entered,
            result.exited,
            result.seconds,
        )


RULE_OUTPUTS: Final = frozenset({"customer_tags", "audience_changes"})
"""What the rules write. Rules read only the profile's columns; a segment reading one of these is
refreshed before the rules run (:func:`refresh_and_tag`)."""


def reads_rule_outputs(segments: list[Segment]) -> bool:
    """Whether any of ``segments`` names a table the rules write (:data:`RULE_OUTPUTS`)."""
    return any(
        table.name.lower() in RULE_OUTPUTS
        for segment in segments
        for table in segment.query.find_all(exp.Table)
    )


def refresh_and_tag(
    wh: Warehouse,
    due: list[Segment],
    rules: list[Rule],
    *,
    now: datetime,
    timeout_s: float,
    max_members: int,
) -> tuple[list[RefreshResult], TagCounts, list[SegmentFailure]]:
    """Refresh the ``due`` segments (:func:`~personify.audiences.memberships.refresh_isolated`:
    a segment the warehouse refuses is left as it was, the others refreshed) and evaluate
    ``rules`` (:func:`~personify.audiences.batch.write_tags`) at ``now``; the refreshes, the
    tag counts and the segments that failed.

    Rules read only the profile's columns, so the two are independent unless a due segment
    reads what the rules write (:func:`reads_rule_outputs`). When independent, the rules run
    beside the segments, in their own transaction on a second connection: each side's large
    statements keep about one core busy (DuckDB runs ``INSERT … RETURNING`` on one thread), so
    on two cores the stage takes about the longer side instead of the sum. Otherwise the
    segments are refreshed first, then the rules run. An error raised on either side (the
    rules, a busy warehouse) is raised once both have ended; the other side's work stands (each
    side is one transaction)."""
    if not due or reads_rule_outputs(due):
        results, failed = refresh_isolated(
            wh, due, now=now, timeout_s=timeout_s, max_members=max_members
        )
        return results, write_tags(wh, rules, now=now), failed
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="personify-rules") as lane:
        tags = lane.submit(_rules_lane, wh, rules, now)
        try:
            results, failed = refresh_isolated(
                wh, due, now=now, timeout_s=timeout_s, max_members=max_members
            )
        except BaseException:
            wait_for([tags])
            raise
        return results, tags.result(), failed


def _rules_lane(wh: Warehouse, rules: list[Rule], now: datetime) -> TagCounts:
    """:func:`write_tags` on a thread of its own, whose connection closes when it is done."""
    try:
        return write_tags(wh, rules, now=now)
    finally:
        wh.release_thread()


def audiences_stage(session: Session) -> dict[str, int]:
    """Refresh due segments and evaluate every rule (side by side when independent:
    :func:`refresh_and_tag`), retire removed segments (see the module doc). Raises
    :class:`~personify.errors.StageIncomplete` (with the counts) once all that is done when a
    segment failed on the warehouse: its memberships were left as they were."""
    project, wh, now = session.project, session.warehouse, clock.now()
    settings = project.config.audiences
    segments = project_segments(project)
    rules = project_rules(project)
    last = last_refreshed(wh)
    due = [s for s in segments if s.refresh.is_due(last.get(s.name), now)]
    check_relations(wh, relations_read(due))  # before anything changes
    if blind_list_members(wh):  # encryption turned on since lists were uploaded
        log.info("lists: plain members replaced by the blind index")
    results, tags, failed = refresh_and_tag(
        wh,
        due,
        rules,
        now=now,
        timeout_s=settings.timeout_seconds,
        max_members=settings.max_members,
    )
    _log_refreshed(results)
    retired = retire_segments(wh, {s.name for s in segments}, now=now)
    log.info("rules: %d tags (+%d, -%d)", tags.tagged, tags.added, tags.removed)
    counts = {
        "segments": len(segments),
        "segments_refreshed": len(results),
        "entered": sum(r.entered for r in results),
        "exited": sum(r.exited for r in results) + retired,
        "rules": tags.rules,
        "tags": tags.tagged,
        "tags_added": tags.added,
        "tags_removed": tags.removed,
    }
    if failed:
        counts["segments_failed"] = len(failed)
        raise failed_segments(failed, counts)
    return counts


@dataclass(frozen=True)
class Preview:
    """A segment run now, without changing memberships."""

    segment: Segment
    sql: str
    """The SQL as run on the warehouse."""
    size: int
    columns: list[str]
    rows: list[tuple[Any, ...]]
    seconds: float


def preview(wh: Warehouse, segment: Segment, *, sample: int, timeout_s: float) -> Preview:
    """Size and a sample of ``segment`` at ``--now``, read-only, under the timeout."""
    started = time.perf_counter()
    check_relations(wh, segment.relations)
    query = segment.pinned_query()
    sql = wh.render(query)
    count = exp.select(exp.func("count", exp.Star()).as_("size")).from_(
        segment.members_query().subquery("members")
    )
    with segment.running():
        _, counted, _ = wh.query_user(wh.render(count), timeout_s=timeout_s, max_rows=1)
        columns, rows, _ = (
            wh.query_user(sql, timeout_s=timeout_s, max_rows=sample) if sample else ([], [], False)
        )
    size = int(counted[0][0]) if counted else 0
    return Preview(segment, sql, size, columns, rows, time.perf_counter() - started)


def segments_for(
    wh: Warehouse, segments: list[Segment], customer_id: str, *, timeout_s: float = 5.0
) -> list[str]:
    """The segments one customer is in *now* (``--now``), asking the warehouse directly — the
    real-time check, without touching the stored memberships."""
    found = []
    for segment in segments:
        query = (
            exp.select(exp.Literal.number(1))
            .from_(segment.members_query().subquery("members"))
            .where(exp.column("customer_id").eq(exp.Literal.string(customer_id)))
            .limit(1)
        )
        with segment.running():
            _, rows, _ = wh.query_user(wh.render(query), timeout_s=timeout_s, max_rows=1)
        if rows:
            found.append(segment.name)
    return found


def customer_tags(wh: Warehouse, customer_id: str) -> list[dict[str, Any]]:
    """The tags stored for one customer (what the last batch evaluation wrote)."""
    return [
        dict(r)
        for r in wh.fetch_arrow(
            "SELECT tag, rule, assigned_at, expires_at, variables FROM customer_tags "
            "WHERE customer_id = ? ORDER BY tag",
            [customer_id],
        ).to_pylist()
    ]
