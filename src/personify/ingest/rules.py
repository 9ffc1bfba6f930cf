"""Row rules beyond types: what a well-typed row must also satisfy to be loaded.

Each rule is data: the table it applies to, a SQL condition over the row's typed columns (written
``{column}``; a column the input does not provide reads as NULL), the reason code a failing row is
quarantined with, and the sentence that explains it. The validator checks them after the
per-column checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from personify.ingest.quarantine import MISSING_IDENTITY, OUT_OF_RANGE


@dataclass(frozen=True)
class RowRule:
    """A condition every loaded row of ``table`` must meet."""

    table: str
    reason: str
    condition: str
    """SQL over ``{column}`` placeholders; NULL counts as met (missing values are checked
    elsewhere)."""
    message: str
    """Why the row failed; ``{value}`` is replaced by the offending value (as JSON)."""
    shown: str | None = None
    """The column whose value the message shows."""


RULES: Final[tuple[RowRule, ...]] = (
    RowRule(
        "events",
        MISSING_IDENTITY,
        "{user_id} IS NOT NULL OR {anonymous_id} IS NOT NULL OR {customer_id} IS NOT NULL",
        "the event has neither a userId nor an anonymousId (it needs one of them)",
    ),
    RowRule(
        "order_items",
        OUT_OF_RANGE,
        "{quantity} > 0",
        'column "quantity": {value} must be greater than 0',
        "quantity",
    ),
    RowRule(
        "order_items",
        OUT_OF_RANGE,
        "{price} >= 0",
        'column "price": {value} must not be negative',
        "price",
    ),
    RowRule(
        "products",
        OUT_OF_RANGE,
        "{price} >= 0",
        'column "price": {value} must not be negative',
        "price",
    ),
    RowRule(
        "customers",
        OUT_OF_RANGE,
        "{engagement_score} BETWEEN 0 AND 100",
        'column "engagement_score": {value} is not between 0 and 100',
        "engagement_score",
    ),
)
"""Every row rule, in the order they are checked."""


def rules_for(table: str) -> list[RowRule]:
    return [r for r in RULES if r.table == table]
