"""The batch recompute behind continuous mode: rebuild every customer the batch way, and report
how the result differs from what the real-time path had left (there should be no difference;
one is drift — an input missed by the real-time path — and the recompute has corrected it).

Compared in the warehouse: the ``customers`` rows are copied aside, identity and profiles are
rebuilt by the batch stage's own functions, and one query counts, per column, the customers
whose value changed (``updated_at`` aside). Time-relative traits
(``days_since_last_purchase``, ``lifecycle_stage``) also change when the day turns; they are
reported apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

from personify.identity.resolve import resolve_batch
from personify.profiles.build import build_customers
from personify.session import Session
from personify.warehouse.base import quote
from personify.warehouse.schema import CUSTOMERS

log = logging.getLogger("personify.realtime")

_BEFORE: Final = "_personify_rt_before"
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

    @property
    def drifted(self) -> bool:
        """Whether anything but time-relative columns differed."""
        return bool(self.added or self.removed or any(c not in TIME_RELATIVE for c in self.changed))


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
    drift = Drift(
        customers=int(row[0] or 0),
        added=int(row[1] or 0),
        removed=int(row[2] or 0),
        changed={c: n for c, n in zip(columns, both, strict=True) if n},
    )
    if drift.drifted:
        log.warning(
            "batch recompute corrected drift: %d added, %d removed, changed %s",
            drift.added,
            drift.removed,
            drift.changed,
        )
    return drift
