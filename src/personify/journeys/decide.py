"""Deciding: a send step turns its due instances into ``messages`` rows, once.

Each decided email gets the idempotency key ``journey:step:customer_id:trigger_key``, unique in
``messages``: decisions are bulk-loaded with ``ON CONFLICT DO NOTHING``, so deciding again (a
rerun, a crash before the instances moved on) adds nothing. The consent gate runs here — fail
closed, for the whole batch in one query (:func:`personify.privacy.consent.consented`) — and
again just before sending: a customer who is suppressed gets ``skipped_suppressed`` (an
erasure's tombstone gives way to consent granted after it, as in the consent gate), one who
consented but paused mail for the purpose (the preference page, ``consent_pauses``)
``skipped_paused``, one without consent ``skipped_consent``; the others are ``queued`` for the
delivery stage. A step with an experiment assigns each of those a variant
(:func:`personify.engagement.experiments.assign_many`: deterministic, recorded) and stores it in
``messages.variant`` with the variant's template; the holdout's messages are ``skipped_holdout``
and are never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from personify.journeys.definitions import Journey, Step
from personify.privacy.consent import consented, is_marketing, standing_grants
from personify.privacy.tombstones import held_tombstones
from personify.warehouse.base import Warehouse
from personify.warehouse.schema import MESSAGES

CONSENT_CHUNK = 20_000
"""Customers per consent query."""


def message_key(journey: str, step: str, customer_id: str, trigger_key: str) -> str:
    """The idempotency key of one decided email."""
    return f"{journey}:{step}:{customer_id}:{trigger_key}"


def allowed(
    wh: Warehouse,
    customer_ids: list[str],
    *,
    purpose: str,
    source_kinds: Mapping[str, str],
    paused: bool = True,
) -> set[str]:
    """The customers among ``customer_ids`` with consent for ``purpose`` by email (fail-closed);
    ``paused=False``: paused or not (see :func:`personify.privacy.consent.consented`)."""
    out: set[str] = set()
    for start in range(0, len(customer_ids), CONSENT_CHUNK):
        chunk = customer_ids[start : start + CONSENT_CHUNK]
        out |= consented(wh, chunk, purpose=purpose, source_kinds=dict(source_kinds), paused=paused)
    return out


def paused_among(
    wh: Warehouse,
    customer_ids: list[str],
    allowed_ids: set[str],
    *,
    purpose: str,
    source_kinds: Mapping[str, str],
) -> set[str]:
    """The customers among ``customer_ids`` left out of ``allowed_ids`` only by a pause they
    asked for (``consent_pauses``): consent for ``purpose`` by email, but paused now."""
    rest = [c for c in customer_ids if c not in allowed_ids]
    if not rest:
        return set()
    return allowed(wh, rest, purpose=purpose, source_kinds=source_kinds, paused=False)


PAUSED = "paused for {purpose} by email at the person's request (preference page)"
"""The reason recorded with ``skipped_paused``: consent granted, but a pause not over yet."""

ERASED = "erased"
"""The reason of an erasure's tombstones: the one suppression a later opt-in lifts."""


def suppressions_of(
    wh: Warehouse, customer_ids: list[str], key: bytes | None = None
) -> list[tuple[str, str, Any]]:
    """The suppressions ``(customer id, reason, created_at)`` stopping customers among
    ``customer_ids``: the rows in ``suppressions`` pointing at them — and, given the project's
    hashing ``key``, the tombstones of an email or phone they hold even when it does not point
    at them yet (fail-closed: an erased person re-created by a path that has not re-linked the
    tombstone, :func:`~personify.privacy.tombstones.held_tombstones`)."""
    out: list[tuple[str, str, Any]] = []
    for start in range(0, len(customer_ids), CONSENT_CHUNK):
        chunk = customer_ids[start : start + CONSENT_CHUNK]
        rows = wh.fetch(
            "SELECT customer_id, reason, created_at FROM suppressions WHERE customer_id IN "
            f"({', '.join('?' for _ in chunk)})",
            chunk,
        )
        out += [(str(c), str(reason), at) for c, reason, at in rows]
        if key is not None:
            out += held_tombstones(wh, key, chunk)
    return out


def blocking(
    wh: Warehouse,
    found: list[tuple[str, str, Any]],
    *,
    purpose: str | None = None,
    source_kinds: Mapping[str, str] | None = None,
) -> set[str]:
    """The customers the suppressions ``found`` (:func:`suppressions_of`) stop for ``purpose``:
    an unsubscribe, bounce or complaint always; an erasure's tombstone unless the customer's
    consent for ``purpose`` by email stands and was granted after it (they came back and opted
    in again: the rule of :func:`~personify.privacy.consent.consented`). Without ``purpose``,
    every suppression stops. One consent query, only when an erasure alone stops someone."""
    hard = {c for c, reason, _ in found if reason != ERASED}
    erased: dict[str, list[Any]] = {}
    for c, reason, at in found:
        if c not in hard and reason == ERASED:
            erased.setdefault(c, []).append(at)
    if purpose is None or not erased:
        return hard | set(erased)
    grants = standing_grants(
        wh,
        sorted(erased),
        purpose=purpose,
        source_kinds=None if source_kinds is None else dict(source_kinds),
    )
    return hard | {c for c, times in erased.items() if not _after(grants.get(c), times)}


def _after(granted: Any, times: list[Any]) -> bool:
    """Whether ``granted`` is later than every tombstone time (fail-closed on a missing one)."""
    if not isinstance(granted, datetime):
        return False
    return all(isinstance(t, datetime) and _utc(t) < _utc(granted) for t in times)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def suppressed(
    wh: Warehouse,
    customer_ids: list[str],
    key: bytes | None = None,
    *,
    purpose: str | None = None,
    source_kinds: Mapping[str, str] | None = None,
) -> set[str]:
    """The customers among ``customer_ids`` a suppression stops (:func:`suppressions_of`,
    :func:`blocking`): given a ``purpose``, an erasure's tombstone gives way to consent for it
    granted after the tombstone; without, every suppression stops."""
    return blocking(
        wh, suppressions_of(wh, customer_ids, key), purpose=purpose, source_kinds=source_kinds
    )


def decide(
    wh: Warehouse,
    journey: Journey,
    index: int,
    step: Step,
    *,
    now: datetime,
    source_kinds: Mapping[str, str],
    key: bytes | None = None,
) -> dict[str, int]:
    """Record a message for every instance due at send step ``index``; counts by status.
    ``key``: the project's hashing key, for the tombstones' check (see :func:`suppressed`)."""
    assert step.template is not None
    rows = wh.fetch(
        "SELECT customer_id, trigger_key FROM journey_instances WHERE journey = ? AND "
        "status = 'active' AND step = ? AND wake_at <= ? ORDER BY customer_id, trigger_key",
        [journey.name, index, now],
    )
    if not rows:
        return {}
    customers = sorted({str(r[0]) for r in rows})
    blocked = (
        suppressed(wh, customers, key, purpose=journey.purpose, source_kinds=source_kinds)
        if is_marketing(journey.purpose)
        else set()
    )
    ok = allowed(
        wh,
        [c for c in customers if c not in blocked],
        purpose=journey.purpose,
        source_kinds=source_kinds,
    )
    paused = paused_among(
        wh,
        [c for c in customers if c not in blocked],
        ok,
        purpose=journey.purpose,
        source_kinds=source_kinds,
    )
    statuses = [
        "skipped_suppressed"
        if str(c) in blocked
        else (
            "queued"
            if str(c) in ok
            else ("skipped_paused" if str(c) in paused else "skipped_consent")
        )
        for c, _ in rows
    ]
    why = {
        "queued": None,
        "skipped_suppressed": "suppressed (unsubscribed, bounced, complained or erased)",
        "skipped_paused": PAUSED.format(purpose=journey.purpose),
        "skipped_consent": f"no consent for {journey.purpose} by email",
    }
    errors = [why[s] for s in statuses]
    variants: list[str | None] = [None] * len(rows)
    templates: list[str | None] = [step.template] * len(rows)
    experiment = step.experiment
    if experiment is not None:  # only who would be sent is assigned (intent to treat)
        from personify.engagement.experiments import HOLDOUT, assign_many

        queued = sorted({str(c) for (c, _), s in zip(rows, statuses, strict=True) if s == "queued"})
        arms = assign_many(wh, experiment.name, queued, experiment.weights, experiment.holdout, now)
        for i, (c, _) in enumerate(rows):
            arm = arms.get(str(c))
            if arm is None:
                continue
            variants[i] = arm
            if arm == HOLDOUT:
                statuses[i] = "skipped_holdout"
                errors[i] = f"holdout of experiment {experiment.name} (receives nothing)"
            else:
                templates[i] = step.arm(arm).template
    n = len(rows)
    data = pa.table(
        {
            "idempotency_key": [
                message_key(journey.name, step.id, str(c), str(k)) for c, k in rows
            ],
            "customer_id": [str(c) for c, _ in rows],
            "journey": [journey.name] * n,
            "step": [step.id] * n,
            "template": templates,
            "variant": pa.array(variants, pa.string()),
            "status": statuses,
            "decided_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "sent_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "error": pa.array(errors, pa.string()),
            "trigger_key": [str(k) for _, k in rows],
            "purpose": [journey.purpose] * n,
        }
    )
    wh.load(MESSAGES, data, on_conflict="ignore")
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts
