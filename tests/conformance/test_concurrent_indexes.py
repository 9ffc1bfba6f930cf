"""Migrations index ``events`` on PostgreSQL with ``CREATE INDEX CONCURRENTLY``, outside their
transaction: writers go on while the index builds; an index an interrupted build left INVALID is
dropped and built again by the next ``migrate``; run again, nothing is built."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from personify.warehouse import connect
from personify.warehouse.base import Warehouse
from personify.warehouse.migrations import _EVENTS_STORED, build_indexes, migrate

pytestmark = pytest.mark.postgres

INSERT = (
    "INSERT INTO events (message_id, type, timestamp, received_at, source) "
    "VALUES (%s, 'track', now(), now(), 'web')"
)


def _state(wh: Warehouse, name: str) -> bool | None:
    row = (
        wh._conn()  # type: ignore[attr-defined]
        .execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = current_schema()",
            [name],
        )
        .fetchone()
    )
    return None if row is None else bool(row[0])


@pytest.fixture
def before_37(postgres_url: str) -> Iterator[Warehouse]:
    """A warehouse migrated up to 36, its events stored, the index of 37 not built yet."""
    with connect(postgres_url, migrate_schema=False) as wh:
        migrate(wh, target=36)
        yield wh


def _raw(wh: Warehouse) -> psycopg.Connection:
    conn = psycopg.connect(wh.conninfo, autocommit=True)  # type: ignore[attr-defined]
    conn.execute(f'SET search_path TO "{wh.schema}"')  # type: ignore[attr-defined]
    return conn


def test_the_events_index_builds_while_writers_go_on(before_37: Warehouse) -> None:
    wh = before_37
    migrate(wh)
    # as an upgrade past 37 finds it: the migration's transaction committed, the index to build
    wh.execute("DROP INDEX ix_events_stored")
    holder, writer = _raw(wh), _raw(wh)
    done: list[object] = []
    migrating = threading.Thread(target=lambda: done.append(migrate(wh)), daemon=True)
    try:
        # a writer's transaction open on events: any index build waits for it to end
        holder.execute("BEGIN")
        holder.execute(INSERT, ["held"])
        migrating.start()
        deadline = time.monotonic() + 10
        while _index_waiting(writer) is False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not done and _index_waiting(writer), "the build should wait for the open writer"
        # meanwhile another writer is not blocked (a plain CREATE INDEX queues it behind its
        # SHARE lock: it would time out here)
        writer.execute("SET lock_timeout = '2s'")
        writer.execute(INSERT, ["during"])
        holder.execute("COMMIT")
        migrating.join(30)
        assert done == [[]]  # (no migration: the index only)
    finally:
        holder.close()  # (its transaction ends: a build still waiting goes on, then ends)
        writer.close()
        migrating.join(30)
    assert _state(wh, "ix_events_stored") is True
    assert _state(wh, "ix_events_received_at") is True
    assert wh.scalar("SELECT count(*) FROM events") == 2
    assert build_indexes(wh, [_EVENTS_STORED]) == []  # built: nothing again


def _index_waiting(conn: psycopg.Connection) -> bool:
    """The index's build is running (waiting, here)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX%%' "
        "AND query LIKE '%%ix_events_stored%%' AND state = 'active'"
    ).fetchone()
    return bool(row and row[0])


def test_an_index_left_invalid_by_a_crash_is_dropped_and_built_again(
    before_37: Warehouse,
) -> None:
    wh = before_37
    conn = _raw(wh)
    try:
        migrate(wh)
        assert _state(wh, "ix_events_stored") is True
        # an interrupted concurrent build: the index exists, INVALID (here: a unique one that
        # failed on two equal keys — as a cancelled or crashed build leaves it)
        conn.execute("DROP INDEX ix_events_stored")
        for m in ("a", "b"):
            conn.execute(
                "INSERT INTO events (message_id, type, timestamp, received_at, stored_at, source) "
                "VALUES (%s, 'track', now(), '2026-01-01Z', '2026-01-01Z', 'web')",
                [m],
            )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_events_stored ON events "
                "((coalesce(stored_at, received_at)))"
            )
        assert _state(wh, "ix_events_stored") is False
        assert migrate(wh) == []  # (no migration: the index only)
        assert _state(wh, "ix_events_stored") is True
        unique = conn.execute(
            "SELECT indisunique FROM pg_index WHERE indexrelid = 'ix_events_stored'::regclass"
        ).fetchone()
        assert unique == (False,)  # built again as the migration says, not kept as it was
        assert build_indexes(wh, [_EVENTS_STORED]) == []
    finally:
        conn.close()


def test_a_missing_index_is_built_by_the_next_migrate(before_37: Warehouse) -> None:
    """Migration 37 recorded but its index never built (the process ended between the two):
    the next ``migrate`` builds it."""
    wh = before_37
    migrate(wh)
    wh.execute("DROP INDEX ix_events_stored")
    assert _state(wh, "ix_events_stored") is None
    assert migrate(wh) == []
    assert _state(wh, "ix_events_stored") is True


def _migrating(wh: Warehouse) -> tuple[threading.Thread, list[object]]:
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(migrate(wh)), daemon=True)
    thread.start()
    return thread, done


def test_a_new_warehouse_is_not_held_by_a_snapshot_elsewhere(postgres_url: str) -> None:
    """A transaction holding a snapshot anywhere in the database (a ``pg_dump``, a BI tool's
    long query) holds every ``CREATE INDEX CONCURRENTLY`` until it ends: a new warehouse's
    empty ``events`` is indexed plainly, at once."""
    with connect(postgres_url, migrate_schema=False) as wh:
        holder = _raw(wh)
        try:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT count(*) FROM pg_class")  # (its snapshot, held)
            thread, done = _migrating(wh)
            thread.join(30)
            assert done, "a new warehouse's migrate waited for a snapshot held elsewhere"
            assert _state(wh, "ix_events_stored") is True
            assert _state(wh, "ix_events_received_at") is True
        finally:
            holder.close()
            thread.join(30)


def test_a_build_in_another_schema_does_not_hold_this_one(
    before_37: Warehouse, postgres_url: str
) -> None:
    """Advisory locks are the whole database's: another project's (or test run's) index build,
    waiting on a writer of its own ``events``, is no reason for this warehouse to wait."""
    wh = before_37
    migrate(wh)
    wh.execute("DROP INDEX ix_events_stored")
    wh.execute(INSERT.replace("%s", "'ours'"))  # (not empty: built concurrently)
    other_url = postgres_url.replace(wh.schema, f"{wh.schema}_other")  # type: ignore[attr-defined]
    with connect(other_url) as other:
        holder = _raw(other)
        theirs, ours = (None, None)
        try:
            other.execute("DROP INDEX ix_events_stored")
            other.execute(INSERT.replace("%s", "'theirs'"))
            holder.execute("BEGIN")
            holder.execute(INSERT, ["held"])  # (their build waits for this writer)
            theirs, _ = _migrating(other)
            deadline = time.monotonic() + 10
            while _state(other, "ix_events_stored") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _state(other, "ix_events_stored") is False  # (theirs: building, waiting)
            ours, done = _migrating(wh)
            ours.join(20)
            assert done == [[]], "this warehouse waited for another schema's index build"
            assert _state(wh, "ix_events_stored") is True
        finally:
            holder.close()
            for thread in (theirs, ours):
                if thread is not None:
                    thread.join(30)
            other.drop_schema()  # type: ignore[attr-defined]


def test_an_index_build_holds_no_audit_entry(before_37: Warehouse) -> None:
    """The build's lock is its own: an audited action (an erasure, a token's use) while an index
    builds — here waiting on a writer of ``events`` — is written at once. (The build's lock key
    was the audit chain's: every audit entry waited for the build, and one written in a
    transaction the build waited for was a deadlock.)"""
    from personify.privacy.audit import log_action

    wh = before_37
    migrate(wh)
    wh.execute("DROP INDEX ix_events_stored")
    wh.execute(INSERT.replace("%s", "'stored'"))  # (not empty: built concurrently)
    holder = _raw(wh)
    building: threading.Thread | None = None
    try:
        holder.execute("BEGIN")
        holder.execute(INSERT, ["held"])
        building, _ = _migrating(wh)
        deadline = time.monotonic() + 10
        while _state(wh, "ix_events_stored") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(wh, "ix_events_stored") is False  # (building, waiting for the writer)
        logged: list[bool] = []

        def audit() -> None:
            log_action(wh, action="test", actor="cli", customer_id=None, key=None)
            logged.append(True)

        auditing = threading.Thread(target=audit, daemon=True)
        auditing.start()
        auditing.join(10)
        assert logged, "an audit entry waited for an index build"
    finally:
        holder.close()
        if building is not None:
            building.join(30)


def test_a_build_whose_connection_drops_says_what_to_do(before_37: Warehouse) -> None:
    """The build's connection ends mid-build (a server restart, ``pg_terminate_backend``): the
    error is the migration's, saying to run again — not the lost connection's, raised while the
    lock it held (released with it) was given back."""
    from personify.errors import MigrationError

    wh = before_37
    migrate(wh)
    wh.execute("DROP INDEX ix_events_stored")
    wh.execute(INSERT.replace("%s", "'stored'"))  # (not empty: built concurrently)
    holder, killer = _raw(wh), _raw(wh)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            migrate(wh)
        except BaseException as e:  # noqa: BLE001 (what the thread raised, to assert on)
            raised.append(e)

    building = threading.Thread(target=run, daemon=True)
    try:
        holder.execute("BEGIN")
        holder.execute(INSERT, ["held"])  # (the build waits for this writer)
        building.start()
        deadline = time.monotonic() + 10
        while not _index_waiting(killer) and time.monotonic() < deadline:
            time.sleep(0.05)
        killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE "
            "'CREATE INDEX%%' AND query LIKE '%%ix_events_stored%%' AND state = 'active'"
        )
        building.join(30)
        assert raised and isinstance(raised[0], MigrationError), raised
        assert "run personify again" in str(raised[0].hint)
    finally:
        holder.close()
        killer.close()
        building.join(30)
    assert migrate(wh) == [] and _state(wh, "ix_events_stored") is True  # (run again: built)


def test_an_empty_tables_build_whose_connection_drops_says_what_to_do(
    before_37: Warehouse,
) -> None:
    """An empty table's index is built plainly, after its lock (waited for a moment, a writer
    not committed yet holding it): the connection ending then fails with the migration's
    error and its hint too, not psycopg's."""
    from personify.errors import MigrationError

    wh = before_37
    migrate(wh)
    wh.execute("DROP INDEX ix_events_stored")
    holder, killer = _raw(wh), _raw(wh)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            migrate(wh)
        except BaseException as e:  # noqa: BLE001 (what the thread raised, to assert on)
            raised.append(e)

    def locking() -> list[int]:
        return [
            int(pid)
            for (pid,) in killer.execute(
                "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LOCK TABLE%%events%%' "
                "AND state = 'active'"
            ).fetchall()
        ]

    building = threading.Thread(target=run, daemon=True)
    try:
        holder.execute("BEGIN")
        holder.execute(INSERT, ["held"])  # (not committed: the table looks empty, and is locked)
        building.start()
        deadline, pids = time.monotonic() + 10, []
        while not (pids := locking()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pids, "the build never waited for the table's lock"
        killer.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
        building.join(30)
        assert raised and isinstance(raised[0], MigrationError), raised
        assert "run personify again" in str(raised[0].hint)
    finally:
        holder.close()
        killer.close()
        building.join(30)
    assert migrate(wh) == [] and _state(wh, "ix_events_stored") is True  # (run again: built)
