"""Data quality (``quality:``): validation rules, freshness and reconciliation."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from personify.config.base import Duration, Name, _Base
from personify.config.sources import TableName

QualityCheck = Literal["not_null", "unique", "format", "range", "accepted_values", "references"]
QualityAction = Literal["quarantine", "flag", "warn"]


class QualityRule(_Base, frozen=True):
    """One validation rule on a column, run as SQL in the warehouse after every load and sync."""

    column: str
    """The column checked (``order_id``; for ``unique`` several: ``a,b``)."""
    check: QualityCheck
    """``not_null``, ``unique``, ``format`` (see ``format``), ``range`` (``min``/``max``),
    ``accepted_values`` (``values``) or ``references`` (``to``: ``table.column``)."""
    format: Literal["email", "phone", "currency"] | None = None
    """For ``check: format``: ``email``, ``phone`` (E.164-like) or ``currency`` (ISO 4217 code)."""
    min: float | None = None
    """For ``check: range``: the smallest value allowed."""
    max: float | None = None
    """For ``check: range``: the largest value allowed."""
    values: tuple[str, ...] = ()
    """For ``check: accepted_values``: the values allowed."""
    to: str | None = None
    """For ``check: references``: ``table.column`` every non-null value must exist in."""
    action: QualityAction = "warn"
    """``warn`` (logged, recorded), ``flag`` (recorded and shown for review in ``personify
    status``) or ``quarantine`` (the violating rows are also copied to the quarantine)."""
    name: str | None = None
    """The rule's name in reports (default ``table.column.check``)."""

    def __post_init__(self) -> None:
        if self.check == "format" and self.format is None:
            raise ValueError("check: format needs format: email, phone or currency")
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check: range needs min, max or both")
        if self.check == "accepted_values" and not self.values:
            raise ValueError("check: accepted_values needs values: [...]")
        if self.check == "references" and (self.to is None or "." not in self.to):
            raise ValueError("check: references needs to: table.column")


class ReconcileSettings(_Base, frozen=True):
    """``personify reconcile``: how much difference is tolerated."""

    threshold: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Discrepancies (not pending) a run may find before ``personify status`` flags it for
    review."""
    sample_size: Annotated[int, msgspec.Meta(ge=0)] = 20
    """Discrepant keys shown per resource in the report (all are stored)."""


class QualityConfig(_Base, frozen=True):
    """Data quality: validation rules, freshness, reconciliation (README, "Data quality and
    reconciliation")."""

    rules: dict[TableName, tuple[QualityRule, ...]] = {}
    """Validation rules per table (``customers``, ``orders`` …)."""
    freshness: dict[Name, Duration] = {}
    """Per source: the longest time since its last sync (or event) before it is flagged."""
    sample_size: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    """Keys of violating rows kept per rule (keys only, never other field values)."""
    run_after_sync: bool = True
    """Run the rules after every ``personify sync``, ``personify import`` and ``personify
    run``."""
    reconcile: ReconcileSettings = ReconcileSettings()
    """Reconciliation settings."""
