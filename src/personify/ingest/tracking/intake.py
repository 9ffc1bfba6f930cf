"""One request's events: sorted into rows to store, quarantine rows, problems and duplicates, then
summed up as the answer (``accepted + quarantined + rejected == received``).

:func:`take_in` runs on the request's own thread (pure Python, no I/O); the rows then go to the
group writer, and :func:`settle` folds what the writer found (duplicates, conflicts) into the
:class:`Intake` before :func:`summary` builds the response body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import msgspec

from personify.ingest.tracking.messages import BatchResult, EventError, PlanViolation
from personify.ingest.tracking.normalize import (
    CONFLICTING_DUPLICATE,
    EVENT_COLUMNS,
    Inputs,
    Problem,
    Row,
    normalize,
)
from personify.ingest.tracking.rows import (
    CONFLICT,
    DUPLICATE,
    QuarantineRow,
    quarantine_row,
)

if TYPE_CHECKING:
    from personify.ingest.tracking.limits import RecentIds

_HASH = EVENT_COLUMNS.index("payload_hash")


@dataclass
class Intake:
    """What became of one request's events."""

    received: int
    """Events in the request."""
    prefix: str
    """JSON pointer of the events in the body (``/batch`` or empty for a single event)."""
    rows: list[Row] = field(default_factory=list)
    """Rows to store."""
    indexes: list[int] = field(default_factory=list)
    """For each row, its event's position in the request."""
    quarantine: list[QuarantineRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Quarantined and rejected events, in any order."""
    duplicates: int = 0
    """Events already stored with the same payload (accepted, nothing new stored)."""

    def location(self, index: int, pointer: str = "") -> str:
        """JSON pointer of an event (or of a value in it) in the request body."""
        return f"{self.prefix}/{index}{pointer}" if self.prefix else pointer

    @property
    def locations(self) -> Sequence[str]:
        """The JSON pointer of each row's event, built only for the rows asked about (a
        conflicting duplicate's quarantine row): ~100 strings a request otherwise thrown away."""
        return _Locations(self)


class _Locations(Sequence[str]):
    """:attr:`Intake.locations`, lazily."""

    __slots__ = ("_intake",)

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    def __len__(self) -> int:
        return len(self._intake.indexes)

    @overload
    def __getitem__(self, at: int) -> str: ...
    @overload
    def __getitem__(self, at: slice) -> list[str]: ...
    def __getitem__(self, at: int | slice) -> str | list[str]:
        intake = self._intake
        if isinstance(at, slice):
            return [intake.location(i) for i in intake.indexes[at]]
        return intake.location(intake.indexes[at])


def _payload(raw: bytes, inputs: Inputs) -> str:
    """The event as received, with what the request implied (type, batch sentAt and context) so
    that a replay reads it the same way."""
    text = raw.decode("utf-8", "replace")
    if not (inputs.kind or inputs.sent_at or inputs.context or inputs.integrations):
        return text
    try:
        doc: Any = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return text
    if not isinstance(doc, dict):
        return text
    if inputs.kind:
        doc["type"] = inputs.kind
    if inputs.sent_at and "sentAt" not in doc:
        doc["sentAt"] = inputs.sent_at.isoformat()
    for key, shared in (("context", inputs.context), ("integrations", inputs.integrations)):
        own = doc.get(key)
        if shared and (own is None or isinstance(own, dict)):
            doc[key] = {**shared, **(own or {})}
    return msgspec.json.encode(doc).decode()


def _quarantine(intake: Intake, problem: Problem, raw: bytes, inputs: Inputs) -> None:
    intake.problems.append(problem)
    if problem.rejected:
        return
    where = intake.location(problem.index, problem.pointer)
    # plan violations name their pointers in the message: the detail says which event
    shown = intake.location(problem.index) if problem.violations else where
    intake.quarantine.append(
        quarantine_row(
            source=inputs.source,
            identity=hashlib.blake2b(raw, digest_size=16).hexdigest() + problem.pointer,
            received_us=inputs.received_us,
            reason=problem.reason,
            detail=f"{shown}: {problem.message}" if shown else problem.message,
            payload=_payload(raw, inputs),
            location=where,
        )
    )


def _conflict(intake: Intake, index: int, row: Row) -> None:
    problem = Problem(
        index,
        "/messageId",
        CONFLICTING_DUPLICATE,
        "this messageId is already stored with another payload; the stored event is kept",
        row[0],
    )
    intake.problems.append(problem)


def take_in(
    raws: Sequence[bytes], inputs: Inputs, recent: RecentIds, *, prefix: str = "/batch"
) -> Intake:
    """Normalize every event of a request; resends known to ``recent`` are answered at once
    (anything else, a conflicting reuse of an id too, is for the store to decide)."""
    intake = normalize_all(raws, inputs, prefix=prefix)
    drop_known(intake, recent)
    return intake


def normalize_all(raws: Sequence[bytes], inputs: Inputs, *, prefix: str = "/batch") -> Intake:
    """:func:`take_in` without the recent ids: pure, so it can run in another process
    (:mod:`personify.ingest.tracking.pool`)."""
    intake = Intake(received=len(raws), prefix=prefix)
    rows, indexes = intake.rows, intake.indexes
    for index, raw in enumerate(raws):
        result = normalize(raw, index, inputs)
        if isinstance(result, Problem):
            _quarantine(intake, result, raw, inputs)
            continue
        rows.append(result)
        indexes.append(index)
    return intake


def drop_known(intake: Intake, recent: RecentIds) -> None:
    """Answer the resends ``recent`` knows at once: counted as duplicates, not stored again."""
    rows, indexes = intake.rows, intake.indexes
    if rows:
        known = recent.duplicates([r[0] for r in rows], [r[_HASH] for r in rows])
        if any(known):
            intake.duplicates += sum(known)
            intake.rows = [r for r, k in zip(rows, known, strict=True) if not k]
            intake.indexes = [i for i, k in zip(indexes, known, strict=True) if not k]


def settle(intake: Intake, status: Sequence[int], recent: RecentIds) -> None:
    """Fold the writer's statuses into ``intake`` and remember the stored ids."""
    stored: list[tuple[str, int | None]] = []
    for index, row, code in zip(intake.indexes, intake.rows, status, strict=True):
        if code == DUPLICATE:
            intake.duplicates += 1
        elif code == CONFLICT:
            _conflict(intake, index, row)
            continue
        stored.append((row[0], row[_HASH]))
    recent.add(stored)


def counts(intake: Intake) -> tuple[int, int, int]:
    """``(accepted, quarantined, rejected)``."""
    rejected = sum(1 for p in intake.problems if p.rejected)
    quarantined = len(intake.problems) - rejected
    return intake.received - quarantined - rejected, quarantined, rejected


def summary(intake: Intake) -> BatchResult | None:
    """The per-event results, or ``None`` when every event was accepted."""
    if not intake.problems:
        return None
    accepted, quarantined, rejected = counts(intake)
    errors = [
        EventError(
            index=p.index,
            pointer=intake.location(p.index, p.pointer),
            reason=p.reason,
            message=p.message,
            outcome="rejected" if p.rejected else "quarantined",
            message_id=p.message_id,
            violations=[
                PlanViolation(intake.location(p.index, v.pointer), v.message) for v in p.violations
            ]
            or None,
        )
        for p in sorted(intake.problems, key=lambda p: p.index)
    ]
    return BatchResult(
        success=False,
        received=intake.received,
        accepted=accepted,
        duplicates=intake.duplicates,
        quarantined=quarantined,
        rejected=rejected,
        errors=errors,
    )
