"""Suppressions from delivery: one-click unsubscribes and ESP bounce/complaint events.

Rows go to ``suppressions`` the way :mod:`personify.privacy.suppress` writes them (and the
consent gate, the ``sendable`` view, journeys' send-time check and erasure read them): a
``customer_id`` row (keyed hash of the id) and an ``email`` row (keyed hash of the normalized
address, re-linked by the privacy stage to whoever holds the address later), both carrying the
customer id, the reason (``unsubscribed``, ``bounced``, ``complained``) and the source
(``unsubscribe``, ``esp:<provider>``). The key is the project's ``signing_key``. Writing is
idempotent: a row that exists keeps its first reason and time, so a repeated POST or a webhook
delivered twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from personify import clock
from personify.config import Project
from personify.delivery.events import EspEvent
from personify.delivery.tokens import UnsubscribeClaim
from personify.privacy.audit import log_action
from personify.privacy.consent import record
from personify.privacy.crypto import is_encrypted, project_ring
from personify.privacy.erase import erased_customers
from personify.privacy.fields import decrypt_rows, lookup_many
from personify.privacy.hashing import hash_normalized, identifier_hash, project_key
from personify.warehouse.base import Warehouse
from personify.warehouse.schema import SUPPRESSIONS

UNSUBSCRIBE_SOURCE = "unsubscribe"
_CHUNK = 500


@dataclass(frozen=True)
class Unsubscribed:
    """What an unsubscribe did."""

    customer_id: str
    """The customer now suppressed (a merged id followed to the current one)."""
    new: bool
    """``False`` when the customer was already unsubscribed (nothing changed)."""


@dataclass(frozen=True)
class EventsApplied:
    """What an ESP webhook delivery did."""

    received: int
    """Events in the payload."""
    suppressing: int
    """Events that suppress (hard bounces, complaints, unsubscribes)."""
    written: int
    """Suppression rows written (0 when all were known: a redelivery)."""


def current_ids(wh: Warehouse, customer_ids: Iterable[str]) -> dict[str, str]:
    """Each id → the customer id it was merged into (itself when not merged or unknown)."""
    ids = sorted({c for c in customer_ids if c})
    out = {c: c for c in ids}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for cid, current in wh.fetch(
            f"SELECT customer_id, coalesce(merged_into, customer_id) FROM customer_ids "
            f"WHERE customer_id IN ({marks})",
            chunk,
        ):
            out[str(cid)] = str(current)
    return out


def _rows(
    wh: Warehouse,
    key: bytes,
    entries: Iterable[tuple[str | None, str | None]],
    reason: Mapping[tuple[str | None, str | None], str],
    source: str,
    at: datetime,
) -> pa.Table:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for customer_id, email in entries:
        why = reason[(customer_id, email)]
        if customer_id:
            pair = ("customer_id", hash_normalized(key, "customer_id", customer_id))
            seen.setdefault(pair, {"customer_id": customer_id, "reason": why})
        if email:
            pair = ("email", identifier_hash(wh, key, "email", email))
            seen.setdefault(pair, {"customer_id": customer_id, "reason": why})
    pairs = sorted(seen)
    return pa.table(
        {
            "subject_hash": pa.array([h for _, h in pairs], pa.string()),
            "kind": pa.array([k for k, _ in pairs], pa.string()),
            "customer_id": pa.array([seen[p]["customer_id"] for p in pairs], pa.string()),
            "reason": pa.array([seen[p]["reason"] for p in pairs], pa.string()),
            "source": pa.array([source] * len(pairs), pa.string()),
            "created_at": pa.array([at] * len(pairs), pa.timestamp("us", tz="UTC")),
        }
    )


def unsubscribe(
    wh: Warehouse,
    project: Project,
    claim: UnsubscribeClaim,
    *,
    form: str = "list-unsubscribe one-click",
    proof: Mapping[str, Any] | None = None,
    scope: str | None = None,
    at: datetime | None = None,
) -> Unsubscribed:
    """Suppress the customer of a verified unsubscribe token (their id and current address)
    and record the token's purpose as ``revoked`` in the consent history (and the audit log) —
    once: a repeat changes nothing. With ``email.unsubscribe_scope: purpose`` only the
    revocation is written, no suppression: mail of the person's other purposes keeps going.
    ``proof`` (``ip``, ``user_agent``) is stored with ``form`` in the history, encrypted
    under the project's key ring when there is one. ``scope`` (``all`` or ``purpose``)
    overrides the project's: the preference page's "unsubscribe from everything" is ``all``.
    The revocation is recorded whenever the purpose is not revoked already, even when every
    suppression row existed (a person back after erasure holds their tombstones: without it,
    consent they granted since would let them through).
    The token of an erased customer changes nothing either
    (:func:`~personify.privacy.erase.erased_customers`: their tombstones suppress them, and a
    new row would keep their id). Raises ConfigError without a ``signing_key``."""
    key = project_key(project)
    at = at or clock.now()
    customer_id = current_ids(wh, [claim.customer_id])[claim.customer_id]
    if erased_customers(wh, key, {claim.customer_id, customer_id}):
        # suppressed by their tombstones already; a row here would bring the id back in clear
        return Unsubscribed(customer_id, False)
    evidence = {**(proof or {}), "form": form}
    if (scope or project.config.email.unsubscribe_scope) == "purpose":
        return Unsubscribed(
            customer_id,
            revoke_purpose(
                wh,
                project,
                customer_id,
                claim.purpose,
                source=UNSUBSCRIBE_SOURCE,
                proof=evidence,
                at=at,
            ),
        )
    emails = [
        str(row["email"])
        for row in decrypt_rows(  # an encrypted address (privacy.encrypted_fields) in plain
            wh,
            wh.fetch_arrow(
                "SELECT customer_id, email FROM customers WHERE customer_id = ?", [customer_id]
            ).to_pylist(),
            strict=False,
        )
        if row["email"] and not is_encrypted(row["email"])
    ]
    entries: list[tuple[str | None, str | None]] = [(customer_id, None)]
    entries += [(customer_id, e) for e in emails]
    reasons = dict.fromkeys(entries, "unsubscribed")
    with wh.transaction():
        written = wh.load(
            SUPPRESSIONS,
            _rows(wh, key, entries, reasons, UNSUBSCRIBE_SOURCE, at),
            on_conflict="ignore",
        )
        # the rows may all exist already (a person back after erasure: their tombstones),
        # and the revocation is still owed, else consent granted since would let them through
        revoke = not _revoked(wh, customer_id, claim.purpose)
        if revoke:
            record(
                wh,
                subject=customer_id,
                purpose=claim.purpose,
                status="revoked",
                source=UNSUBSCRIBE_SOURCE,
                at=at,
                proof=evidence,
                cipher=project_ring(project),
            )
        if written or revoke:
            log_action(
                wh,
                action="consent",
                actor=UNSUBSCRIBE_SOURCE,
                customer_id=customer_id,
                key=key,
                detail={"purpose": claim.purpose, "status": "revoked", "suppressed": True},
            )
    return Unsubscribed(customer_id, bool(written) or revoke)


def revoke_purpose(
    wh: Warehouse,
    project: Project,
    customer_id: str,
    purpose: str,
    *,
    source: str,
    proof: Mapping[str, Any],
    at: datetime | None = None,
) -> bool:
    """Revoke ``purpose`` by email for ``customer_id`` (a current customer id) — the consent
    history row with ``proof``, the current state, the audit log — and nothing else: no
    suppression, so the person's other purposes still send. Returns whether anything changed
    (``False`` when the purpose was revoked already)."""
    at = at or clock.now()
    with wh.transaction():
        if _revoked(wh, customer_id, purpose):
            return False
        record(
            wh,
            subject=customer_id,
            purpose=purpose,
            status="revoked",
            source=source,
            at=at,
            proof=proof,
            cipher=project_ring(project),
        )
        log_action(
            wh,
            action="consent",
            actor=source,
            customer_id=customer_id,
            key=project_key(project),
            detail={"purpose": purpose, "status": "revoked", "suppressed": False},
        )
    return True


def _revoked(wh: Warehouse, customer_id: str, purpose: str) -> bool:
    """Whether ``purpose`` by email is revoked already on the customer's own consent row."""
    return bool(
        wh.scalar(
            "SELECT count(*) FROM consents WHERE customer_id = ? AND purpose = ? "
            "AND channel = 'email' AND status = 'revoked'",
            [customer_id, purpose],
        )
    )


def apply_events(
    wh: Warehouse,
    project: Project,
    provider: str,
    received: int,
    events: Sequence[EspEvent],
    *,
    at: datetime | None = None,
) -> EventsApplied:
    """Suppress the addresses (and their customers) of bounce, complaint and unsubscribe
    events, in one write. The customer is the one the event names (custom args), else every
    customer holding the address; an address nobody holds gets an ``email`` row alone."""
    if not events:
        return EventsApplied(received, 0, 0)
    key = project_key(project)
    at = at or clock.now()
    holders: dict[str, set[str]] = {}
    addresses = sorted({e.email.strip().lower() for e in events})
    for start in range(0, len(addresses), _CHUNK):
        chunk = addresses[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for cid, email in wh.fetch(
            f"SELECT customer_id, lower(email) FROM customers WHERE lower(email) IN ({marks})",
            chunk,
        ):
            holders.setdefault(str(email), set()).add(str(cid))
    # an encrypted address column: through its blind index (one statement for them all)
    for address, indexed in lookup_many(wh, "email", addresses).items():
        holders.setdefault(address, set()).update(indexed)
    named = current_ids(wh, [e.customer_id for e in events if e.customer_id])
    # a report about a person erased since (a late bounce): their address is suppressed, by its
    # hash, but their customer id is not written back
    gone = erased_customers(wh, key, named.values())
    entries: list[tuple[str | None, str | None]] = []
    reasons: dict[tuple[str | None, str | None], str] = {}
    for event in events:
        email = event.email.strip()
        ids = {named[event.customer_id]} if event.customer_id else holders.get(email.lower(), set())
        ids -= gone
        owners: list[str | None] = [*sorted(ids)] or [None]
        for cid in owners:
            entry = (cid, email)
            if entry not in reasons:
                entries.append(entry)
                reasons[entry] = event.reason
    with wh.transaction():
        written = wh.load(
            SUPPRESSIONS,
            _rows(wh, key, entries, reasons, f"esp:{provider}", at),
            on_conflict="ignore",
        )
    return EventsApplied(received, len(events), written)
