"""Suppressions written the way the consent gate and erasure read them.

:func:`suppress` is for the unsubscribe endpoint and bounce/complaint webhooks: a ``customer_id``
suppression (keyed hash of the id) plus one per email address given (keyed hash of the
normalized address, so it survives an erasure and re-ingestion and is re-linked to whoever holds
the address later), and — for unsubscribes — the purpose's consent recorded ``revoked`` with
the source, so the history says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa

from personify import clock
from personify.privacy.consent import record
from personify.privacy.hashing import hash_normalized, identifier_hash
from personify.warehouse.base import Warehouse
from personify.warehouse.schema import SUPPRESSIONS

REASONS: tuple[str, ...] = ("unsubscribed", "bounced", "complained", "erased", "manual")


def suppress(
    wh: Warehouse,
    *,
    key: bytes,
    customer_id: str,
    reason: str,
    source: str,
    emails: Iterable[str] = (),
    purpose: str | None = None,
    at: datetime | None = None,
) -> int:
    """Suppress ``customer_id`` (and the ``emails``) for ``reason``; with ``purpose``, also record
    that consent as revoked. Idempotent: an existing suppression keeps its first reason and time.
    Returns the number of suppression rows written."""
    at = at or clock.now()
    pairs = [("customer_id", hash_normalized(key, "customer_id", customer_id))]
    pairs += sorted({("email", identifier_hash(wh, key, "email", e)) for e in emails if e})
    with wh.transaction():
        written = wh.load(
            SUPPRESSIONS,
            pa.table(
                {
                    "subject_hash": [h for _, h in pairs],
                    "kind": [k for k, _ in pairs],
                    "customer_id": [customer_id] * len(pairs),
                    "reason": [reason] * len(pairs),
                    "source": [source] * len(pairs),
                    "created_at": pa.array([at] * len(pairs), pa.timestamp("us", tz="UTC")),
                }
            ),
            on_conflict="ignore",
        )
        if purpose:
            record(
                wh,
                subject=customer_id,
                purpose=purpose,
                status="revoked",
                source=source,
                at=at,
                proof={"reason": reason},
            )
    return written
