"""The pipeline's ``offers`` step: record which discount codes orders have redeemed.

It belongs before ``journeys`` (so a journey's goal or branch sees codes used since the last
run); it is idempotent, so running it twice at the same ``--now`` marks nothing new.
"""

from __future__ import annotations

import logging

from personify import clock
from personify.offers.discounts import redeem_from_orders
from personify.session import Session

log = logging.getLogger(__name__)


def offers_stage(session: Session) -> dict[str, int]:
    """Mark the codes named by orders and ``Order Completed`` events up to ``--now`` redeemed."""
    redeemed = redeem_from_orders(session.warehouse, now=clock.now())
    if redeemed:
        log.info("discount codes: %d redeemed by orders", redeemed)
    return {"codes_redeemed": redeemed}
