"""The pipeline stage ``privacy`` (after profiles, before audiences and journeys).

1. copies ``identity.source_kinds`` into ``consent_kinds`` (how SQL resolves consent rows keyed by
   a source's own id);
2. records consent sent with tracking events (``context.consent``, :mod:`.tracking`), and gives
   consent states that files and CRM syncs wrote straight into ``consents`` their history row;
3. re-links suppression tombstones: an email or phone suppression (an erasure, an unsubscribe)
   holds only a keyed hash; when re-ingested data brings the address back under a new customer,
   the tombstone is pointed at that customer, so it is not marketable again until it opts in
   after the tombstone (see :func:`~personify.privacy.consent.consented`; the real-time pass
   does the same for the nodes it adds, :mod:`.tombstones`);
4. encrypts the plain values of ``privacy.encrypted_fields`` the profile build wrote, and
   indexes them (:mod:`.fields`).
"""

from __future__ import annotations

from personify.privacy.consent import backfill_history, sync_source_kinds
from personify.privacy.crypto import project_ring
from personify.privacy.fields import (
    from_project,
    seal_customers,
    seal_input_emails,
    seal_observations,
    seal_records,
)
from personify.privacy.tombstones import relink_tombstones
from personify.privacy.tracking import apply_tracking_consent
from personify.session import Session


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
