"""The batch recompute behind continuous mode: rebuild every customer the batch way, and report
how the result differs from what the real-time path had left (there should be no difference;
one is drift — an input missed by the real-time path — and the recompute has corrected it).

Compared in the warehouse: the ``customers`` rows are copied aside, identity and profiles are
rebuilt by the batch stage's own functions, and one query counts, per column, the customers
whose value changed (``updated_at`` aside); then the real-time segments are refreshed and
every rule evaluated the batch way, and the customers whose membership or tag changed are
counted per segment and per tag. Time-relative traits
(``days_since_last_purchase``, ``lifecycle_stage``) also change when the day turns; they are
reported apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from personify import clock
from personify.identity.resolve import resolve_batch
from personify.profiles.build import build_customers
from personify.session import Session
from personify.warehouse.base import quote
from personify.warehouse.schema import CUSTOMERS

log = logging.getLogger("personify.realtime")

_BEFORE: Final = "_personify_rt_before"
_TAGS: Final = "_personify_rt_tags_before"
TIME_RELATIVE: Final = ("days_since_last_purchase", "lifecycle_stage")
"""Columns that change with the clock alone."""


@dataclass(frozen=True)
class Drift:
    """What a recompute changed."""

    customers: int
    """Customers after the recompute."""
    added: int
    """Customers the real-time path had not built."""
    removed: int
    """Customers the recompute dropped (merged away)."""
    changed: dict[str, int] = field(default_factory=dict)
    """Per column, customers whose value changed (time-relative columns included)."""
    segments: dict[str, int] = field(default_factory=dict)
    """Per real-time segment, customers who entered or left it at the recompute."""
    tags: dict[str, int] = field(default_factory=dict)
    """Per tag, customers who gained or lost it at the recompute."""
    segments_failed: list[str] = field(default_factory=list)
    """Real-time segments the warehouse refused: they kept their memberships and are recorded
    in ``segment_errors`` (``personify status``), as a batch refresh records them."""

    @property
    def drifted(self) -> bool:
        """Whether anything but time-relative columns differed."""
        return bool(
            self.added
            or self.removed
            or any(c not in TIME_RELATIVE for c in self.changed)
            or self.segments
            or self.tags
        )


def recompute(session: Session) -> Drift:
    """Rebuild identity and every profile the batch way; what differed from before."""
    wh, project = session.warehouse, session.project
    columns = [c for c in CUSTOMERS.column_names if c not in {"customer_id", "updated_at"}]
    wh.execute(f"DROP TABLE IF EXISTS {_BEFORE}")
    wh.execute(f"CREATE TEMP TABLE {_BEFORE} AS SELECT * FROM customers")
    try:
        resolve_batch(wh, project.config.identity)
        build_customers(wh, project)
        sums = ", ".join(
            "sum(CASE WHEN a.customer_id IS NOT NULL AND b.customer_id IS NOT NULL AND "
            f"CAST(b.{quote(c)} AS VARCHAR) IS DISTINCT FROM "
            f"CAST(a.{quote(c)} AS VARCHAR) THEN 1 ELSE 0 END)"
            for c in columns
        )
        row = wh.fetch(
            "SELECT count(a.customer_id), "
            "sum(CASE WHEN b.customer_id IS NULL THEN 1 ELSE 0 END), "
            "sum(CASE WHEN a.customer_id IS NULL THEN 1 ELSE 0 END), "
            f"{sums} FROM customers a FULL OUTER JOIN {_BEFORE} b "
            "ON a.customer_id = b.customer_id"
        )[0]
    finally:
        wh.execute(f"DROP TABLE IF EXISTS {_BEFORE}")
    both = [int(v or 0) for v in row[3:]]
    segments, tags, failed = _audiences(session)
    drift = Drift(
        customers=int(row[0] or 0),
        added=int(row[1] or 0),
        removed=int(row[2] or 0),
        changed={c: n for c, n in zip(columns, both, strict=True) if n},
        segments=segments,
        tags=tags,
        segments_failed=failed,
    )
    if failed:
        log.warning(
            "batch recompute: segment(s) %s failed on the warehouse and kept their memberships "
            "(personify status shows why)",
            ", ".join(failed),
        )
    if drift.drifted:
        log.warning(
            "batch recompute corrected drift: %d added, %d removed, changed %s, "
            "segments %s, tags %s",
            drift.added,
            drift.removed,
            drift.changed,
            drift.segments,
            drift.tags,
        )
    return drift


def _audiences(session: Session) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Refresh the real-time segments and evaluate every rule the batch way (after the
    profiles were rebuilt); per segment and per tag, the customers whose membership changed,
    and the segments the warehouse refused (isolated as the batch isolates them:
    :func:`~personify.audiences.memberships.refresh_isolated`)."""
    from personify.audiences.batch import write_tags
    from personify.audiences.memberships import refresh_isolated
    from personify.audiences.stage import project_rules, project_segments

    wh, project, now = session.warehouse, session.project, clock.now()
    settings = project.config.audiences
    done, failed = refresh_isolated(
        wh,
        [s for s in project_segments(project) if s.refresh.mode == "real-time"],
        now=now,
        timeout_s=settings.timeout_seconds,
        max_members=settings.max_members,
    )
    segments = {r.segment: r.entered + r.exited for r in done if r.entered or r.exited}
    tags: dict[str, int] = {}
    rules = project_rules(project)
    if rules:
        wh.execute(f"DROP TABLE IF EXISTS {_TAGS}")
        wh.execute(f"CREATE TEMP TABLE {_TAGS} AS SELECT customer_id, tag FROM customer_tags")
        try:
            write_tags(wh, rules, now=now)
            for tag, n in wh.fetch(
                "SELECT tag, count(*) FROM (SELECT coalesce(a.tag, b.tag) AS tag FROM "
                f"customer_tags AS a FULL OUTER JOIN {_TAGS} AS b ON a.customer_id = "
                "b.customer_id AND a.tag = b.tag WHERE a.tag IS NULL OR b.tag IS NULL) AS d "
                "GROUP BY tag"
            ):
                tags[str(tag)] = int(n)
        finally:
            wh.execute(f"DROP TABLE IF EXISTS {_TAGS}")
    return segments, tags, [f.segment for f in failed]
