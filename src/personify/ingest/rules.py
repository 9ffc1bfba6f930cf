"""Row rules beyond types: what a well-typed row must also satisfy to be loaded.

Each rule is data: the table it applies to, a SQL condition over the row's typed columns (written
``{column}``; a column the input does not provide reads as NULL, a defaulted one as its default),
the reason code a failing row is quarantined with, and the sentence that explains it. The
validator checks them after the per-column checks.

An event from a file meets the rules the tracking API applies (:mod:`personify.ingest.tracking.
normalize`), built from the same definitions (:mod:`personify.ingest.tracking.messages`): a known
message type, the fields its type needs, free-form parts that are JSON objects, an identity, and
a timestamp no further after its receipt than the source's ``future_tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from personify.ingest.reasons import (
    FUTURE_TIMESTAMP,
    INVALID_TYPE,
    MISSING_IDENTITY,
    MISSING_REQUIRED,
    OUT_OF_RANGE,
)
from personify.ingest.tracking.messages import OBJECTS, REQUIRED, TYPES, needs


@dataclass(frozen=True)
class RowRule:
    """A condition every loaded row of ``table`` must meet."""

    table: str
    reason: str
    condition: str
    """SQL over ``{column}`` placeholders; NULL counts as met (missing values are checked
    elsewhere)."""
    message: str
    """Why the row failed; ``{value}`` is replaced by the offending value (as JSON), ``{column}``
    by the column named by :attr:`shown` (``column "event"``, with its origin when mapped)."""
    shown: str | None = None
    """The column the rule is about (its value and name fill the message)."""


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _event_rules() -> tuple[RowRule, ...]:
    """The tracking API's rules for one event, as row rules over ``events``' columns."""
    known = ", ".join(f"'{t}'" for t in TYPES)
    rules = [
        RowRule(
            "events",
            INVALID_TYPE,
            f"{{type}} IN ({known})",
            f"{{column}}: {{value}} is not a message type (one of {', '.join(TYPES)})",
            "type",
        )
    ]
    for kind, needed in REQUIRED.items():
        for field in needed:
            column = _snake(field)
            rules.append(
                RowRule(
                    "events",
                    MISSING_REQUIRED,
                    f"{{type}} <> '{kind}' OR {{{column}}} IS NOT NULL",
                    f"{{column}} is required but missing ({needs(kind, field)})",
                    column,
                )
            )
    rules.extend(
        RowRule(
            "events",
            INVALID_TYPE,
            # the first character, else the parser (JSON text may start with blanks): a CASE,
            # as DuckDB evaluates both sides of an OR (parsing every value: ~5x the cost)
            f"CASE WHEN starts_with({{{part}}}, '{{{{') THEN true "
            f"ELSE json_type({{{part}}}) = 'OBJECT' END",
            "{column}: {value} is not a JSON object",
            part,
        )
        for part in OBJECTS
    )
    rules.append(
        RowRule(
            "events",
            MISSING_IDENTITY,
            # (an alias without a userId failed the rule before)
            "{user_id} IS NOT NULL OR {anonymous_id} IS NOT NULL OR {customer_id} IS NOT NULL",
            "the event has neither a userId nor an anonymousId (it needs one of them)",
        )
    )
    rules.append(
        RowRule(
            "events",
            FUTURE_TIMESTAMP,
            # ($future_us: the source's future_tolerance; received_at defaults to the import's
            # start)
            "epoch_us({timestamp}) - epoch_us({received_at}) <= $future_us",
            "{column}: {value} is more than future_tolerance ({tolerance}) after the event was "
            "received (its received_at, else the import's start): a clock ahead?",
            "timestamp",
        )
    )
    return tuple(rules)


RULES: Final[tuple[RowRule, ...]] = (
    *_event_rules(),
    RowRule(
        "order_items",
        OUT_OF_RANGE,
        "{quantity} > 0",
        "{column}: {value} must be greater than 0",
        "quantity",
    ),
    RowRule(
        "order_items",
        OUT_OF_RANGE,
        "{price} >= 0",
        "{column}: {value} must not be negative",
        "price",
    ),
    RowRule(
        "products",
        OUT_OF_RANGE,
        "{price} >= 0",
        "{column}: {value} must not be negative",
        "price",
    ),
    RowRule(
        "customers",
        OUT_OF_RANGE,
        "{engagement_score} BETWEEN 0 AND 100",
        "{column}: {value} is not between 0 and 100",
        "engagement_score",
    ),
)
"""Every row rule, in the order they are checked."""


def rules_for(table: str) -> list[RowRule]:
    return [r for r in RULES if r.table == table]
