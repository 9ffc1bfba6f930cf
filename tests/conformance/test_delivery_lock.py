"""Delivery's lock on PostgreSQL is a session-level advisory lock on one connection: if that
connection drops mid-delivery (a restart, a network cut, an idle timeout — here
``pg_terminate_backend``), the lock is gone and another process may take it and send. Delivery
notices before its next batch (or when its warehouse statement fails), records what it handed
over, and stops cleanly, the rest left queued for the process that holds the lock. The journeys'
lock likewise stops advancing them."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conformance.journey_support import NOW, Shop, shop, signed_up
from tests.conformance.lock_support import terminate

from personify import clock
from personify.delivery import Delivered, Envelope, transport_for
from personify.journeys import project_journeys, run_journeys
from personify.journeys.send import LOCK_LOST, deliver
from personify.journeys.stage import locked
from personify.warehouse import connect

__all__ = ["shop"]  # the fixture, shared with test_journeys


class _Cut:
    """A transport that, after handing over ``before`` messages, has the warehouse server end
    the connection this process talks to it on (and so holds its locks on)."""

    name = "outbox"

    def __init__(self, inner: Any, shop: Shop, before: int) -> None:
        self.inner, self.shop, self.left = inner, shop, before
        self.pid = shop.wh.scalar("SELECT pg_backend_pid()")

    def send(self, envelope: Envelope) -> Delivered:
        if self.left == 0:
            terminate(self.shop.wh, self.pid)
        self.left -= 1
        delivered: Delivered = self.inner.send(envelope)
        return delivered

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_lock_lost_mid_delivery_stops_it_cleanly(shop: Shop) -> None:
    wh = signed_up(shop, [f"c{i:02d}" for i in range(12)], batch_size=4)
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)
        with locked(wh, "delivery") as lock:
            assert lock is not None and lock.held()
            cut = _Cut(transport_for(project), shop, before=2)
            counts = deliver(wh, project, journeys, now=NOW, transport=cut, held=lock.held)
            assert not lock.held()
            # the server released it: another process takes it (and would send the rest)
            other = connect(wh.url)
            try:
                with locked(other, "delivery") as theirs:
                    assert theirs is not None and theirs.held()
            finally:
                other.close()
    assert counts.lock_lost and counts.stopped == LOCK_LOST
    assert counts.as_dict()["lock_lost"] == 1
    # the first batch was handed over (two of its four after the cut): recorded, once
    statuses = dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1"))
    assert statuses == {"sent": 4, "queued": 8}
    assert len(shop.outbox()) == 4
    assert shop.run(NOW)["sent"] == 8  # the rest, by whoever holds the lock next
    assert len(shop.outbox()) == 12


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_lock_lost_between_batches_sends_nothing_more(shop: Shop) -> None:
    wh = signed_up(shop, [f"c{i:02d}" for i in range(8)], batch_size=4)
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)
        with locked(wh, "delivery") as lock:
            assert lock is not None
            cut = _Cut(transport_for(project), shop, before=4)  # the cut as batch 2 starts
            counts = deliver(wh, project, journeys, now=NOW, transport=cut, held=lock.held)
    assert counts.lock_lost
    assert dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1"))["sent"] >= 4


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_lost_journeys_lock_stops_advancing_them(shop: Shop) -> None:
    wh = signed_up(shop, ["c0", "c1"], batch_size=4)
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        with locked(wh, "journeys") as lock:
            assert lock is not None
            terminate(shop.wh, int(wh.scalar("SELECT pg_backend_pid()")))
            assert run_journeys(wh, project, journeys, held=lock.held) == []
    assert wh.scalar("SELECT count(*) FROM messages") == 0  # nothing decided unlocked
