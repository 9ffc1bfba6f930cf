"""What becomes of a tracking request's events: the statuses the store gives them and the
quarantine rows that record the others.

Light on purpose (no warehouse, no Arrow): the tracking API's normalizer processes
(:mod:`personify.ingest.tracking.pool`) import it; :mod:`.store` re-exports it.
"""

from __future__ import annotations

from typing import Final

from personify.ingest import reasons as q

NEW: Final = 0
"""Stored now."""
DUPLICATE: Final = 1
"""Already stored with the same payload (or by a source that keeps no hash): nothing new."""
CONFLICT: Final = 2
"""Already stored with another payload: quarantined as ``conflicting_duplicate``."""

QuarantineRow = tuple[str, str, int, str, str, str | None, str]
"""``(id, source, received_at µs, reason, detail, payload, location)``."""


def quarantine_row(
    *,
    source: str,
    identity: str,
    received_us: int,
    reason: str,
    detail: str,
    payload: str | None,
    location: str,
) -> QuarantineRow:
    """One quarantine row; ``identity`` (the event's content or id) makes its id deterministic."""
    qid = q.quarantine_id(source, f"tracking:{reason}", identity)
    return (qid, source, received_us, reason, detail, payload, location)
