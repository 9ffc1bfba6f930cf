"""Share the costly, cart-independent part of offers across the batches of one run.

Every offers call is one statement that reads ``events`` for the cart events and product views
it needs; that read is the same for every batch of a run. Inside ``with snapshot(wh, now=T):``
it is done once, into temporary tables on this thread's connection — every cart event of the
lookback (JSON properties extracted) and every product's strongest co-viewed and co-bought
partners — and the calls at ``now=T`` with the same windows read those instead. Results are the
same as without a snapshot; only the cost moves. The data must not change meanwhile (a run's
send loop reads, it does not load). Calls at another instant or with other windows, or on
another thread, compute inline as usual. Leaving the block drops the tables.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from datetime import datetime

from personify.offers._state import Snapshot, register
from personify.offers.carts import LOOKBACK_DAYS, moves_select
from personify.offers.recommendations import NEIGHBOURS, co_sql
from personify.warehouse import Warehouse
from personify.warehouse.base import quote

_names = itertools.count()


@contextlib.contextmanager
def snapshot(
    wh: Warehouse,
    *,
    now: datetime,
    window_days: int = 90,
    lookback_days: int = LOOKBACK_DAYS,
    neighbours: int = NEIGHBOURS,
) -> Iterator[Snapshot]:
    """Precompute cart events and product partners at ``now`` for the calls in the block."""
    n = next(_names)
    snap = Snapshot(
        now=now,
        window_days=window_days,
        lookback_days=lookback_days,
        neighbours=neighbours,
        moves=f"_offers_moves_{n}",
        co=f"_offers_co_{n}",
    )
    moves, moves_params = moves_select(now, lookback_days, None)
    co, co_params = co_sql(now, window_days, neighbours, None)
    try:
        wh.execute(f"CREATE TEMP TABLE {quote(snap.moves)} AS {moves}", moves_params)
        wh.execute(
            f"CREATE TEMP TABLE {quote(snap.co)} AS WITH {co} "
            "SELECT src, dst, strength, pos FROM co",
            co_params,
        )
        for name in (snap.moves, snap.co):  # temporary tables get no automatic statistics
            wh.execute(f"ANALYZE {quote(name)}")
        previous = register(wh, snap)
        try:
            yield snap
        finally:
            register(wh, previous)
    finally:
        for name in (snap.moves, snap.co):
            wh.execute(f"DROP TABLE IF EXISTS {quote(name)}")
