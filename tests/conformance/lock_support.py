"""A run's PostgreSQL lock taken from under it, for the suites of what a run does when the
connection holding its lock drops (a server restart, a network cut, an idle timeout): the
destinations' pushes, event forwarding, file imports and REST syncs.

:func:`lock_thief` (inside the run, when the test wants the lock gone) ends the server session
holding the run's advisory lock — the one :func:`personify.sources.schedule.exclusive` took —
and takes the lock itself, as another run starting meanwhile would; :func:`terminate` ends one
server session by its pid."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from personify.errors import ServiceUnavailable
from personify.sources.schedule import advisory_key
from personify.warehouse import Warehouse
from personify.warehouse.postgres.backend import split_url

_HOLDER = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND ((classid::bigint << 32) | objid::bigint) = %s"
)


def terminate(wh: Warehouse, pid: int) -> None:
    """Have ``wh``'s server end the session ``pid`` (as a restart or a network cut would)."""
    conninfo, _ = split_url(wh.url)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


class LockThief:
    """Another connection to ``wh``'s server, ready to take run ``name``'s advisory lock."""

    def __init__(self, wh: Warehouse, name: str) -> None:
        conninfo, schema = split_url(wh.url)
        self.wh, self.key = wh, advisory_key(name, schema)
        self.conn = psycopg.connect(conninfo, autocommit=True)

    def steal(self, *, reconnect: bool = False) -> None:
        """End the server session holding the lock (something must: the run's) and take it, as
        another run would. ``reconnect``: then have the warehouse find its connection dropped
        and open a new one (which does not hold the lock)."""
        row = self.conn.execute(_HOLDER, [self.key]).fetchone()
        assert row is not None, "nothing holds the run's lock to take"
        self.conn.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        self.conn.execute("SELECT pg_advisory_lock(%s)", [self.key])  # another run starts
        if reconnect:
            with contextlib.suppress(ServiceUnavailable):  # the dropped connection…
                self.wh.scalar("SELECT 1")
            assert self.wh.scalar("SELECT 1") == 1  # …and the new one the run goes on with

    def release(self) -> None:
        """That other run ends: the lock is free."""
        self.conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])


@contextlib.contextmanager
def lock_thief(wh: Warehouse, name: str) -> Iterator[LockThief]:
    """A :class:`LockThief` of run ``name``'s lock on ``wh``, its connection closed after the
    block. Skips the test where a lock is in-process (DuckDB): it never goes with a connection."""
    if not wh.capabilities.advisory_lock:
        pytest.skip("an in-process lock is never lost with a connection")
    thief = LockThief(wh, name)
    try:
        yield thief
    finally:
        thief.conn.close()
