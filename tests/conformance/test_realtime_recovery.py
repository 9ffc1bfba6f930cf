"""The recovery marks of continuous mode on every backend: a starting process catches up from
its own mark and from those of processes that stopped beating (taking them over), never from a
live process's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from personify import clock
from personify.realtime.recovery import KEY, STALE, mark, recover
from personify.warehouse import Warehouse

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def marks(wh: Warehouse) -> list[str]:
    rows = wh.fetch("SELECT key FROM identity_state WHERE key LIKE ? ORDER BY key", [KEY + "%"])
    return [str(k) for (k,) in rows]


def test_recovery_takes_its_own_mark_and_the_dead_ones(warehouse: Warehouse) -> None:
    wh = warehouse
    assert recover(wh, "host:8000") is None  # a first start: nothing to catch up
    with clock.frozen(NOW - STALE - timedelta(seconds=5)):  # beaten long ago: gone
        mark(wh, "host:8001", NOW - timedelta(minutes=30))
    with clock.frozen(NOW - timedelta(seconds=2)):  # beating: alive
        mark(wh, "host:8002", NOW - timedelta(hours=5))
        mark(wh, "host:8000", NOW - timedelta(minutes=3))
    with clock.frozen(NOW):
        assert recover(wh, "host:8000") == NOW - timedelta(minutes=30)
        assert marks(wh) == [KEY + "host:8000", KEY + "host:8002"]  # the dead one taken over
        assert recover(wh, "host:8000") == NOW - timedelta(minutes=3)  # its own, kept
        mark(wh, "host:8000", NOW - timedelta(minutes=1))  # upserted
        assert recover(wh, "host:8000") == NOW - timedelta(minutes=1)
        assert recover(wh, "host:8003") is None  # a new process: nothing of its own, none dead
