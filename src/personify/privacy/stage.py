"""The pipeline stage ``privacy`` (after profiles, before audiences and journeys).

1. copies ``identity.source_kinds`` into ``consent_kinds`` (how SQL resolves consent rows keyed by
   a source's own id);
2. records consent sent with tracking events (``context.consent``, :mod:`.tracking`), and gives
   consent states that files and CRM syncs wrote straight into ``consents`` their history row;
3. re-links suppression tombstones: an email or phone suppression (an erasure, an unsubscribe)
   holds only a keyed hash; when re-ingested data brings the address back under a new customer,
   the tombstone is pointed at that customer, so it is not marketable again until it opts in
   after the tombstone (see :func:`~personify.privacy.consent.consented`);
4. encrypts the plain values of ``privacy.encrypted_fields`` the profile build wrote, and
   indexes them (:mod:`.fields`).
"""

from __future__ import annotations

from personify.identity import state
from personify.privacy.consent import backfill_history, sync_source_kinds
from personify.privacy.crypto import project_ring
from personify.privacy.fields import (
    from_project,
    seal_customers,
    seal_input_emails,
    seal_observations,
    seal_records,
)
from personify.privacy.hashing import HASHED_KINDS, hash_normalized
from personify.privacy.tracking import apply_tracking_consent
from personify.session import Session
from personify.warehouse.base import Warehouse

_MARK = "privacy.tombstones"
"""identity_state key: ``<tombstone count>:<newest tombstone>:<highest node id checked>``."""


def relink_tombstones(wh: Warehouse, key: bytes) -> int:
    """Point every email/phone suppression at the customer now holding its address (a tombstone
    whose address nobody holds keeps its customer). Returns the number re-linked.

    Incremental: while the set of tombstones is unchanged, only identity nodes added since the
    last pass are hashed (a new customer is a new node); new tombstones, or node ids starting
    over (a rebuilt graph), mean one full pass."""
    marks = ", ".join("?" for _ in HASHED_KINDS)
    tombs = {
        (str(k), str(h)): c
        for k, h, c in wh.fetch(
            f"SELECT kind, subject_hash, customer_id FROM suppressions WHERE kind IN ({marks})",
            list(HASHED_KINDS),
        )
    }
    if not tombs:
        return 0
    newest = wh.scalar(
        f"SELECT max(created_at) FROM suppressions WHERE kind IN ({marks})", list(HASHED_KINDS)
    )
    top = int(wh.scalar("SELECT coalesce(max(node_id), 0) FROM identity_nodes") or 0)
    signature = f"{len(tombs)}:{newest}"
    stored_sig, _, stored_top = (state.get(wh, _MARK) or "").rpartition(":")
    after = int(stored_top) if stored_sig == signature and stored_top.isdigit() else 0
    if after > top:
        after = 0
    moved = 0
    for kind, value, customer_id in wh.fetch(
        "SELECT kind, value, customer_id FROM identity_nodes "
        f"WHERE kind IN ({marks}) AND customer_id IS NOT NULL AND NOT blocked AND node_id > ?",
        [*HASHED_KINDS, after],
    ):
        pair = (str(kind), hash_normalized(key, str(kind), str(value)))
        if pair in tombs and tombs[pair] != customer_id:
            wh.execute(
                "UPDATE suppressions SET customer_id = ? WHERE kind = ? AND subject_hash = ?",
                [customer_id, *pair],
            )
            tombs[pair] = customer_id
            moved += 1
    state.put(wh, _MARK, f"{signature}:{top}")
    return moved


def privacy_stage(session: Session) -> dict[str, int]:
    """Pipeline stage ``privacy``: consent kinds, tracking consent, tombstones re-linked."""
    wh, project = session.warehouse, session.project
    secret = project.config.signing_key
    with wh.transaction():
        sync_source_kinds(wh, project.config.identity.source_kinds)
        counts = {"consent_changes": apply_tracking_consent(wh, project_ring(project))}
        counts["consent_history_added"] = backfill_history(wh)
        counts["tombstones_relinked"] = (
            relink_tombstones(wh, secret.reveal().encode("utf-8")) if secret else 0
        )
    cipher = from_project(project)
    if cipher is not None:  # batches in their own transactions
        counts["fields_sealed"] = seal_customers(wh, cipher)["sealed"]
        counts["record_values_sealed"] = seal_records(wh, cipher)
        counts["observations_sealed"] = seal_observations(wh, cipher)
        counts["input_emails_sealed"] = seal_input_emails(wh, cipher)
    return counts
