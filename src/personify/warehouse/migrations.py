"""Versioned migrations that create and upgrade the public data model, idempotently.

Each :class:`Migration` runs once per warehouse, in its own transaction, and is recorded in
``_personify_migrations``. On PostgreSQL concurrent processes serialize on an advisory lock.
A migration's :attr:`Migration.indexes` on tables that may be big are built after its
transaction (:func:`build_indexes`): on PostgreSQL ``CONCURRENTLY`` — which cannot run inside a
transaction block — so writers go on while a big ``events`` is indexed.
Migration 1 creates every table as :mod:`~personify.warehouse.schema` defines it today
(``IF NOT EXISTS``); later ones add what changed (``ADD COLUMN IF NOT EXISTS`` …), so a fresh
warehouse and an upgraded one end up the same. :func:`migrate` then checks that every column the
schema names exists. The migrations' bodies are in
:mod:`~personify.warehouse.migration_steps`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from personify import clock
from personify.errors import MigrationError
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.migration_steps import (
    _alerts,
    _audiences,
    _consent_pauses,
    _console_sessions,
    _create_all,
    _destination_identifiers,
    _destination_keys,
    _destinations,
    _discount_codes,
    _engagement,
    _erasure_links,
    _event_forwarding,
    _events_stored_at,
    _identity_and_profiles,
    _journey_waits,
    _journeys,
    _keys_by_construction,
    _lists,
    _locale,
    _locale_view,
    _looked_for_by_destination,
    _predictive,
    _privacy,
    _privacy_protection,
    _quality,
    _received_at,
    _schema_drift,
    _segment_error_kinds,
    _segment_error_kinds_required,
    _segment_errors_and_alert_subjects,
    _tracking,
    _webhook_receipts,
)
from personify.warehouse.migration_steps import create_table_sql as create_table_sql
from personify.warehouse.schema import TABLES, VIEWS

log = logging.getLogger(__name__)

LEDGER = "_personify_migrations"
_PG_LOCK_KEY = 7_316_525_042
INDEX_LOCK_POLL_S = 0.2
"""How often a process waiting for another's index build asks again. A poll, not a blocking
``pg_advisory_lock``: a session blocked in one holds a snapshot, which the other's
``CREATE INDEX CONCURRENTLY`` would wait for — each waiting on the other."""


@dataclass(frozen=True)
class Index:
    """A secondary index built outside its migration's transaction (:func:`build_indexes`)."""

    name: str
    table: str
    on: str
    """What is indexed, as SQL between the parentheses (quoted columns, or an expression in
    its own parentheses)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Warehouse], None]
    indexes: tuple[Index, ...] = ()
    """Indexes on tables that may be big (``events``): built once the migration's transaction
    committed, on PostgreSQL ``CONCURRENTLY`` (a plain ``CREATE INDEX`` blocks every write to
    the table while it runs); checked by every :func:`migrate`, so a build a crash cut short
    (an ``INVALID`` index) is dropped and built again."""


_EVENTS_RECEIVED = Index("ix_events_received_at", "events", '"received_at"')
_EVENTS_STORED = Index("ix_events_stored", "events", '(coalesce("stored_at", "received_at"))')


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "public data model: tables, indexes, the customer_data view", _create_all),
    Migration(2, "identity graph, profile observations, computed traits", _identity_and_profiles),
    Migration(3, "audiences: suppressions, audience changes, the sendable view", _audiences),
    Migration(4, "tracking API: events.payload_hash and events.plan_violations", _tracking),
    Migration(
        5,
        "keyed by construction: events, order_items, customer_records without an engine key "
        "where keys are dear (DuckDB)",
        _keys_by_construction,
    ),
    Migration(
        6,
        "journeys: instances, trigger state, journey tags; messages.trigger_key, purpose, "
        "send_after, transport",
        _journeys,
    ),
    Migration(
        7,
        "discount codes: idempotency_key (who asked) and order_id (who redeemed)",
        _discount_codes,
    ),
    Migration(
        9,
        "privacy: consent history, consent kinds, erasure progress, audit log; sendable view "
        "resolves consent over every identifier",
        _privacy,
    ),
    Migration(10, "webhooks: receipts of deliveries (dedup by webhook id)", _webhook_receipts),
    Migration(
        11,
        "data quality: reconciliation runs and discrepancies, validation rule violations",
        _quality,
    ),
    Migration(12, "engagement: experiment assignments", _engagement),
    Migration(
        13,
        "privacy: audit log hash chain and append-only trigger; blind index of encrypted fields",
        _privacy_protection,
    ),
    Migration(14, "data quality: source fields seen and schema changes (drift)", _schema_drift),
    Migration(
        16,
        "continuous mode: orders, order_items and tickets remember when they were stored "
        "(received_at)",
        _received_at,
    ),
    Migration(
        17,
        "keyed by construction: customers, identities, identity_nodes, identity_edges, "
        "profile_observations without an engine key where keys are dear (DuckDB)",
        _keys_by_construction,
    ),
    Migration(18, "destinations: what each pushed record looked like", _destinations),
    Migration(
        19,
        "destinations: the encrypted key of each pushed record, for removals (on_remove: delete)",
        _destination_keys,
    ),
    Migration(
        24, "consent pauses (preference page); the sendable view reads them", _consent_pauses
    ),
    Migration(
        25,
        "journeys: journey_instances.waiting_since (wait_for steps: when the window opened)",
        _journey_waits,
    ),
    Migration(26, "uploaded lists: list_members, list_uploads, the list_customers view", _lists),
    Migration(29, "profiles: customers.locale and customer_records.locale", _locale),
    Migration(30, "alerts: alert_state, alert_notifications", _alerts),
    Migration(
        32,
        "predictive traits: customers.p_alive, expected_orders, predicted_clv; predictive_fits",
        _predictive,
    ),
    Migration(33, "profiles: the customer_data view shows customers.locale", _locale_view),
    Migration(
        34,
        "event forwarding: event_forwards; events indexed by received_at",
        _event_forwarding,
        (_EVENTS_RECEIVED,),
    ),
    Migration(
        35,
        "segment_errors (failed segment refreshes); alert_state.subject_state (alerts per subject)",
        _segment_errors_and_alert_subjects,
    ),
    Migration(
        36,
        "ad audiences: destination_identifiers (keyed hashes of what each record was sent "
        "with) and destination_state.identifiers_key",
        _destination_identifiers,
    ),
    Migration(
        37,
        "events.stored_at (when each row was inserted: event forwarding's cursor)",
        _events_stored_at,
        (_EVENTS_STORED,),
    ),
    Migration(
        38,
        "console_sessions: console sessions checked server-side (sign-out ends a copied cookie)",
        _console_sessions,
    ),
    Migration(
        39,
        "segment_errors.kind: what failed (sql, cap, timeout), derived once from the error's "
        "text for rows stored before",
        _segment_error_kinds,
    ),
    Migration(
        40,
        "erasure links: destination_state.erasure_id (the erasure a pending removal is for) "
        "and erasure_progress.erasure_of (the erasure an alias row names)",
        _erasure_links,
    ),
    Migration(
        42,
        "erasure_progress: what an erasure looked for at a destination named by it (pruned by "
        "the next push), indexed by step and time",
        _looked_for_by_destination,
    ),
    Migration(
        44,
        "segment_errors.kind NOT NULL on upgraded warehouses too (migration 39 added it "
        "nullable), rows without one derived from their text first",
        _segment_error_kinds_required,
    ),
)


def current_version(wh: Warehouse) -> int:
    if LEDGER not in wh.relations():
        return 0
    return int(wh.scalar(f"SELECT coalesce(max(version), 0) FROM {LEDGER}") or 0)


def migrate(wh: Warehouse, *, target: int | None = None) -> list[int]:
    """Apply the migrations the warehouse lacks (up to ``target``); returns the versions applied."""
    latest = max(m.version for m in MIGRATIONS)
    target = latest if target is None else target
    applied: list[int] = []
    ts = wh.column_type("TIMESTAMPTZ")
    wh.execute(
        f"CREATE TABLE IF NOT EXISTS {LEDGER} "
        f"(version BIGINT PRIMARY KEY, name VARCHAR NOT NULL, applied_at {ts} NOT NULL)"
    )
    for migration in sorted(MIGRATIONS, key=lambda m: m.version):  # versions land out of order
        if migration.version > target:
            break
        try:
            with wh.transaction():
                if wh.capabilities.advisory_lock:
                    wh.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})", ())
                done = wh.scalar(
                    f"SELECT count(*) FROM {LEDGER} WHERE version = ?", [migration.version]
                )
                if done:
                    continue
                migration.apply(wh)
                wh.execute(
                    f"INSERT INTO {LEDGER} (version, name, applied_at) VALUES (?, ?, ?)",
                    [migration.version, migration.name, clock.now()],
                )
                applied.append(migration.version)
        except MigrationError:
            raise
        except Exception as e:
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) failed: {e}"
            ) from e
    done = {int(v) for (v,) in wh.fetch(f"SELECT version FROM {LEDGER}")}
    build_indexes(
        wh, [i for m in MIGRATIONS if m.version <= target and m.version in done for i in m.indexes]
    )
    if target == latest:
        check_schema(wh)
    return applied


def build_indexes(wh: Warehouse, indexes: Sequence[Index]) -> list[str]:
    """Build the ``indexes`` the warehouse lacks (idempotent; returns the names built). On
    PostgreSQL ``CREATE INDEX CONCURRENTLY`` — writes to the table go on while it builds —,
    outside any transaction, one process at a time (a session advisory lock, the schema's:
    :func:`_index_lock_key`); an empty table's is built plainly (:func:`_built_while_empty`); an
    index a crashed or cancelled build left ``INVALID`` (it exists, is kept up to date by every
    write, and serves no query) is dropped, concurrently, and built again. Elsewhere with secondary
    indexes, ``CREATE INDEX IF NOT EXISTS``; DuckDB has none (zone maps)."""
    if not indexes or not wh.capabilities.secondary_indexes:
        return []
    if not wh.capabilities.concurrent_indexes:
        for index in indexes:
            wh.execute(_create_index(index, concurrently=False), ())
        return []
    if not [i for i in indexes if _index_state(wh, i.name) != "valid"]:
        return []  # (every call of migrate asks: one catalog query, no lock)
    built: list[str] = []
    # (PostgreSQL's own connection: autocommit, no transaction)
    conn = wh._conn()  # type: ignore[attr-defined]
    key = _index_lock_key(str(conn.execute("SELECT current_schema()").fetchone()[0]))
    waited = False
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
        if not waited:
            log.warning(
                "another process is building indexes on this warehouse's %s: waiting for it",
                ", ".join(sorted({i.table for i in indexes})),
            )
            waited = True
        time.sleep(INDEX_LOCK_POLL_S)
    try:
        for index in indexes:
            state = _index_state(wh, index.name)  # (again, under the lock: another built it?)
            if state == "valid":
                continue
            try:
                if not _built_while_empty(conn, index, state):
                    if state == "invalid":
                        log.warning(
                            "index %s on %s was left unfinished (a build interrupted): built again",
                            index.name,
                            index.table,
                        )
                        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(index.name)}")
                    log.info("building index %s on %s concurrently", index.name, index.table)
                    conn.execute(_create_index(index, concurrently=True))
            except Exception as e:  # (an empty table's plain build's too: a connection lost)
                raise MigrationError(
                    f"building index {index.name} on {index.table} failed: {e}",
                    hint="run personify again: an unfinished index is dropped and built again",
                ) from e
            built.append(index.name)
    finally:
        # (a connection lost mid-build released the lock with its session: what failed is said)
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    return built


def _index_lock_key(schema: str) -> int:
    """The session advisory lock of index builds in ``schema``: advisory locks are the whole
    database's, and a project (or a test run) in another schema building its own index for an
    hour is no reason to wait."""
    digest = hashlib.sha256(f"personify-index-build:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


EMPTY_LOCK_TIMEOUT: Final = "500ms"
"""How long a plain build on an empty table waits for its writers before building
concurrently instead."""


def _built_while_empty(conn: Any, index: Index, state: str) -> bool:
    """Build ``index`` in a transaction, plainly, when its table is empty (a new warehouse's):
    that takes no time, while ``CONCURRENTLY`` waits for every transaction holding a snapshot
    anywhere in the database — a ``pg_dump``, a BI tool's long query — before it ends. The
    table's ``SHARE`` lock first (waiting :data:`EMPTY_LOCK_TIMEOUT` at most for writers), then
    empty still: built; otherwise ``False`` (built concurrently)."""
    table = quote(index.table)
    if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
        return False
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{EMPTY_LOCK_TIMEOUT}'")
            conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
            if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                raise _NotEmpty
            if state == "invalid":
                conn.execute(f"DROP INDEX IF EXISTS {quote(index.name)}")
            conn.execute(_create_index(index, concurrently=False))
    except Exception as e:  # (the lock not had in time: psycopg's LockNotAvailable, 55P03)
        if isinstance(e, _NotEmpty) or getattr(e, "sqlstate", None) == "55P03":
            return False
        raise
    return True


class _NotEmpty(Exception):
    """Rows came into the table before its lock was taken: built concurrently."""


def _create_index(index: Index, *, concurrently: bool) -> str:
    how = " CONCURRENTLY" if concurrently else ""
    return (
        f"CREATE INDEX{how} IF NOT EXISTS {quote(index.name)} ON {quote(index.table)} ({index.on})"
    )


def _index_state(wh: Warehouse, name: str) -> str:
    """``valid``, ``invalid`` (a concurrent build that did not finish) or ``missing``: the index
    ``name`` in the warehouse's schema (PostgreSQL's catalog)."""
    conn = wh._conn()  # type: ignore[attr-defined]  # (the catalog's SQL, as PostgreSQL's)
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND n.nspname = current_schema()",
        [name],
    ).fetchone()
    if row is None:
        return "missing"
    return "valid" if row[0] else "invalid"


def check_schema(wh: Warehouse) -> None:
    """Every table and column of the schema exists (a missed migration fails loudly here)."""
    existing = wh.relations()
    missing = [t.name for t in TABLES if t.name not in existing]
    missing += [v for v in VIEWS if v not in existing]
    if missing:
        raise MigrationError(f"the warehouse lacks {', '.join(missing)} after migrating")
    rows = wh.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        + (" WHERE table_schema = current_schema()" if wh.capabilities.advisory_lock else "")
    )
    have = {(t, c) for t, c in rows}
    gaps = [f"{t.name}.{c}" for t in TABLES for c in t.column_names if (t.name, c) not in have]
    if gaps:
        raise MigrationError(
            f"columns missing after migrating: {', '.join(gaps)}",
            hint="a schema change needs a migration in personify/warehouse/migrations.py",
        )
