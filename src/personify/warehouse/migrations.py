"""Versioned migrations that create and upgrade the public data model, idempotently.

Each :class:`Migration` runs once per warehouse, in its own transaction, and is recorded in
``_personify_migrations``. On PostgreSQL concurrent processes serialize on an advisory lock.
A migration's :attr:`Migration.indexes` on tables that may be big are built after its
transaction (:func:`build_indexes`): on PostgreSQL ``CONCURRENTLY`` — which cannot run inside a
transaction block — so writers go on while a big ``events`` is indexed.
Migration 1 creates every table as :mod:`~personify.warehouse.schema` defines it today
(``IF NOT EXISTS``); later ones add what changed (``ADD COLUMN IF NOT EXISTS`` …), so a fresh
warehouse and an upgraded one end up the same. :func:`migrate` then checks that every column the
schema names exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from personify import clock
from personify.errors import MigrationError
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import TABLES, TABLES_BY_NAME, VIEWS, Table

log = logging.getLogger(__name__)

LEDGER = "_personify_migrations"
_PG_LOCK_KEY = 7_316_525_042
_PG_INDEX_LOCK_KEY = 7_316_525_043
"""The session-level advisory lock one process holds while it builds indexes concurrently (not
the migrations' transaction-level one: ``CREATE INDEX CONCURRENTLY`` runs outside any
transaction)."""
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


def create_table_sql(wh: Warehouse, table: Table) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` (and indexes, where the engine wants them) for ``table``."""
    bulky, rewritten = wh.capabilities.bulky_text, wh.capabilities.rewritten_text
    cols = [
        f"{quote(c.name)} {wh.column_type(c.type)}{bulky if c.bulky else ''}"
        f"{rewritten if c.rewritten else ''}"
        f"{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
    ]
    keyed = wh.capabilities.cheap_keys or not table.key_by_construction
    if table.primary_key and keyed:
        cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in table.primary_key)})")
    out = [f"CREATE TABLE IF NOT EXISTS {quote(table.name)} (\n  " + ",\n  ".join(cols) + "\n)"]
    if wh.capabilities.secondary_indexes:
        for index in table.indexes:
            name = f"ix_{table.name}_{'_'.join(index)}"
            out.append(
                f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table.name)} "
                f"({', '.join(quote(c) for c in index)})"
            )
    return out


def _create_all(wh: Warehouse) -> None:
    for table in TABLES:
        for sql in create_table_sql(wh, table):
            wh.execute(sql, ())  # native DDL: the engine's own types
    for view_sql in VIEWS.values():
        wh.execute(view_sql)


_IDENTITY_TABLES = (
    "customer_records",
    "identity_nodes",
    "identity_edges",
    "identity_refusals",
    "customer_ids",
    "profile_observations",
    "identity_state",
)
_PREDICTIVE_COLUMNS = ("p_alive", "expected_orders", "predicted_clv")
"""Migration 32's; the ``customer_data`` view shows them, so an older warehouse passing through
migration 2 (which recreates the view) gets them there — and ``locale`` (migration 29's, in the
view since migration 33) likewise."""
_IDENTITY_COLUMNS = {
    "customers": (
        "first_seen",
        "last_seen",
        "days_since_last_purchase",
        "open_tickets",
        "lifecycle_stage",
        "traits",
        *_PREDICTIVE_COLUMNS,
        "locale",
    ),
    "orders": ("source_customer_id",),
    "tickets": ("source_customer_id",),
}


def _identity_and_profiles(wh: Warehouse) -> None:
    """Issue 5: the identity graph, observations, new trait columns, the wider view."""
    for name in _IDENTITY_TABLES:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    for name, columns in _IDENTITY_COLUMNS.items():
        for column in columns:
            col = TABLES_BY_NAME[name].column(column)
            wh.execute(
                f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
                f"{quote(col.name)} {wh.column_type(col.type)}",
                (),
            )
    wh.execute(VIEWS["customer_data"])


_AUDIENCE_TABLES = ("suppressions", "audience_changes", "segment_state")
_SENDABLE_READS = ("consent_kinds", "consent_pauses")
"""Tables the ``sendable`` view reads that later migrations added: an older warehouse passing
through an earlier migration that (re)creates the view gets them first (empty, as they start)."""


def _sendable_view(wh: Warehouse) -> None:
    for name in _SENDABLE_READS:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    wh.execute(VIEWS["sendable"])


def _audiences(wh: Warehouse) -> None:
    """Issue 6: suppressions, audience changes, segment refresh state, the ``sendable`` view."""
    for name in _AUDIENCE_TABLES:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    _sendable_view(wh)


_TRACKING_COLUMNS = {"events": ("payload_hash", "plan_violations")}


def _tracking(wh: Warehouse) -> None:
    """Issue 3: events remember their payload hash and tracking-plan violations."""
    for name, columns in _TRACKING_COLUMNS.items():
        for column in columns:
            col = TABLES_BY_NAME[name].column(column)
            wh.execute(
                f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
                f"{quote(col.name)} {wh.column_type(col.type)}",
                (),
            )


def _keys_by_construction(wh: Warehouse) -> None:
    """Engines without cheap keys: drop the primary-key constraint of the tables keyed by
    construction (``events``, ``order_items``, ``customer_records`` …) that earlier versions
    created with one. DuckDB cannot drop a constraint, so each such table is rebuilt — created
    anew from its own columns without the key, copied, dropped, renamed — in the migration's
    transaction (views bind by name: they read the new table). A table without the constraint is
    left alone (idempotent)."""
    if wh.capabilities.cheap_keys:
        return
    for table in TABLES:
        if table.key_by_construction and table.primary_key and _has_primary_key(wh, table.name):
            _rebuild_without_key(wh, table.name)


def _has_primary_key(wh: Warehouse, name: str) -> bool:
    found = wh.scalar(
        "SELECT count(*) FROM duckdb_constraints() WHERE schema_name = current_schema() "
        "AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [name],
    )
    return bool(found)


def _rebuild_without_key(wh: Warehouse, name: str) -> None:
    columns = wh.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        [name],
    )
    new = f"__personify_rebuild_{name}"
    defs = ", ".join(
        f"{quote(c)} {t}{'' if nullable == 'YES' else ' NOT NULL'}" for c, t, nullable in columns
    )
    names = ", ".join(quote(c) for c, _, _ in columns)
    wh.execute(f"DROP TABLE IF EXISTS {quote(new)}")
    wh.execute(f"CREATE TABLE {quote(new)} ({defs})")
    wh.execute(f"INSERT INTO {quote(new)} ({names}) SELECT {names} FROM {quote(name)}")
    wh.execute(f"DROP TABLE {quote(name)}")
    wh.execute(f"ALTER TABLE {quote(new)} RENAME TO {quote(name)}")


_DISCOUNT_COLUMNS = {"discount_codes": ("idempotency_key", "order_id")}


def _discount_codes(wh: Warehouse) -> None:
    """Issue 7: discount codes remember the request that issued them and the order that redeemed
    them (idempotent issuing, single-use redemption)."""
    for name, columns in _DISCOUNT_COLUMNS.items():
        for column in columns:
            col = TABLES_BY_NAME[name].column(column)
            wh.execute(
                f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
                f"{quote(col.name)} {wh.column_type(col.type)}",
                (),
            )
    if wh.capabilities.secondary_indexes:
        wh.execute(
            "CREATE INDEX IF NOT EXISTS ix_discount_codes_idempotency_key "
            "ON discount_codes (idempotency_key)",
            (),
        )


_PRIVACY_TABLES = ("consent_history", "consent_kinds", "erasure_progress", "audit_log")


def _privacy(wh: Warehouse) -> None:
    """Issue 8: consent history with proof, the source-kind map consent resolution reads,
    erasure progress, the audit log; the ``sendable`` view resolves consent like the send-time
    gate (every identifier of the customer, a revocation wins)."""
    for name in _PRIVACY_TABLES:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    _sendable_view(wh)


_JOURNEY_TABLES = ("journey_instances", "journey_state", "journey_tags")
_MESSAGE_COLUMNS = {"messages": ("trigger_key", "purpose", "send_after", "transport")}


def _journeys(wh: Warehouse) -> None:
    """Issue 7: journey instances, trigger checkpoints and journey tags; ``messages`` learns its
    trigger key, consent purpose, quiet-hours hold and transport."""
    for name in _JOURNEY_TABLES:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    for name, columns in _MESSAGE_COLUMNS.items():
        for column in columns:
            col = TABLES_BY_NAME[name].column(column)
            wh.execute(
                f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
                f"{quote(col.name)} {wh.column_type(col.type)}",
                (),
            )
    if wh.capabilities.secondary_indexes:
        wh.execute("CREATE INDEX IF NOT EXISTS ix_messages_status ON messages (status)", ())


def _webhook_receipts(wh: Warehouse) -> None:
    """Issue 4: receipts of webhook deliveries (dedup by id, in the delivery's transaction)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["webhook_receipts"]):
        wh.execute(sql, ())


_QUALITY_TABLES = ("reconciliation_runs", "reconciliation_discrepancies", "quality_violations")


def _quality(wh: Warehouse) -> None:
    """Issue 10: reconciliation runs and their discrepancies; validation rule violations."""
    for name in _QUALITY_TABLES:
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())


def _schema_drift(wh: Warehouse) -> None:
    """Issue 10: the fields each source was seen with, and the changes (schema drift)."""
    for name in ("source_fields", "schema_changes"):
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())


def _destinations(wh: Warehouse) -> None:
    """Destinations (reverse ETL): the state of every record pushed."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["destination_state"]):
        wh.execute(sql, ())


def _consent_pauses(wh: Warehouse) -> None:
    """The preference page's pauses: ``consent_pauses``; the ``sendable`` view leaves paused
    people out."""
    _sendable_view(wh)


def _journey_waits(wh: Warehouse) -> None:
    """Journeys' ``wait_for`` steps: ``journey_instances.waiting_since`` (when the window of
    the step an instance waits at opened)."""
    col = TABLES_BY_NAME["journey_instances"].column("waiting_since")
    wh.execute(
        f"ALTER TABLE journey_instances ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )


def _destination_keys(wh: Warehouse) -> None:
    """Destinations that remove records: ``destination_state.record_key`` (encrypted)."""
    col = TABLES_BY_NAME["destination_state"].column("record_key")
    wh.execute(
        f"ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )


def _engagement(wh: Warehouse) -> None:
    """Issue 11: experiment assignments."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["experiment_assignments"]):
        wh.execute(sql, ())


_AUDIT_CHAIN = ("seq", "prev_hash", "entry_hash")
APPEND_ONLY_TRIGGER: tuple[str, ...] = (
    "CREATE OR REPLACE FUNCTION personify_audit_log_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP "
    "USING ERRCODE = '42501'; END $$",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION personify_audit_log_append_only()",
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION personify_audit_log_append_only()",
)
"""PostgreSQL refuses UPDATE, DELETE and TRUNCATE on the audit log (DuckDB: the warehouse
layer). Run on the backend's own connection: plpgsql is no SQL to transpile."""


def _privacy_protection(wh: Warehouse) -> None:
    """Issue 8: the audit log's hash chain (seq, prev_hash, entry_hash) and, on PostgreSQL, a
    trigger refusing UPDATE/DELETE/TRUNCATE on it; the blind index of encrypted fields."""
    for column in _AUDIT_CHAIN:
        col = TABLES_BY_NAME["audit_log"].column(column)
        wh.execute(
            f"ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS {quote(col.name)} "
            f"{wh.column_type(col.type)}",
            (),
        )
    for sql in create_table_sql(wh, TABLES_BY_NAME["field_index"]):
        wh.execute(sql, ())
    if wh.capabilities.secondary_indexes:
        wh.execute("CREATE INDEX IF NOT EXISTS ix_audit_log_seq ON audit_log (seq)", ())
    if wh.capabilities.advisory_lock:  # PostgreSQL: its own connection, in this transaction
        conn = wh._conn()  # type: ignore[attr-defined]
        for statement in APPEND_ONLY_TRIGGER:
            conn.execute(statement)


_RECEIVED_TABLES = ("orders", "order_items", "tickets")


def _received_at(wh: Warehouse) -> None:
    """Issue 9: orders, their items and tickets remember when they were stored
    (``received_at``), so continuous mode applies those a sync stored since its last pass. Rows
    stored before: the source's own last change (``updated_at``, else ``created_at``); items,
    their order's."""
    for name in _RECEIVED_TABLES:
        col = TABLES_BY_NAME[name].column("received_at")
        wh.execute(
            f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
            f"{quote(col.name)} {wh.column_type(col.type)}",
            (),
        )
    for name in ("orders", "tickets"):
        wh.execute(
            f"UPDATE {name} SET received_at = coalesce(updated_at, created_at) "
            "WHERE received_at IS NULL"
        )
    wh.execute(
        "UPDATE order_items SET received_at = o.received_at FROM orders o "
        "WHERE o.order_id = order_items.order_id AND order_items.received_at IS NULL"
    )


def _locale(wh: Warehouse) -> None:
    """Session 19: a profile's ``locale`` (chosen by survivorship like ``timezone``) and the
    records' that it is chosen from; templates' locale variants read it."""
    for name in ("customers", "customer_records"):
        col = TABLES_BY_NAME[name].column("locale")
        wh.execute(
            f"ALTER TABLE {quote(name)} ADD COLUMN IF NOT EXISTS "
            f"{quote(col.name)} {wh.column_type(col.type)}",
            (),
        )


def _lists(wh: Warehouse) -> None:
    """Session 19: uploaded lists (``list_members``, ``list_uploads``) and the
    ``list_customers`` view segments read them through."""
    for name in ("list_members", "list_uploads"):
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())
    wh.execute(VIEWS["list_customers"])


def _alerts(wh: Warehouse) -> None:
    """Session 19: alerts (``alert_state``, ``alert_notifications``)."""
    for name in ("alert_state", "alert_notifications"):
        for sql in create_table_sql(wh, TABLES_BY_NAME[name]):
            wh.execute(sql, ())


def _predictive(wh: Warehouse) -> None:
    """Session 19: predictive traits — three ``customers`` columns (also in ``customer_data``)
    and the table of fits."""
    for column in _PREDICTIVE_COLUMNS:
        col = TABLES_BY_NAME["customers"].column(column)
        wh.execute(
            f"ALTER TABLE customers ADD COLUMN IF NOT EXISTS "
            f"{quote(col.name)} {wh.column_type(col.type)}",
            (),
        )
    for sql in create_table_sql(wh, TABLES_BY_NAME["predictive_fits"]):
        wh.execute(sql, ())
    wh.execute(VIEWS["customer_data"])


def _locale_view(wh: Warehouse) -> None:
    """Session 19: ``customer_data`` shows ``customers.locale`` (migration 29's column), appended
    at the end of the view as migration 32 appended the predictive traits."""
    wh.execute(VIEWS["customer_data"])


def _event_forwarding(wh: Warehouse) -> None:
    """Session 20: event forwarding (``kind: events`` destinations) — ``event_forwards``, and
    ``events`` indexed by ``received_at`` (each forwarding reads the recent ones:
    :data:`_EVENTS_RECEIVED`, built after the transaction)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["event_forwards"]):
        wh.execute(sql, ())


_EVENTS_RECEIVED = Index("ix_events_received_at", "events", '"received_at"')
_EVENTS_STORED = Index("ix_events_stored", "events", '(coalesce("stored_at", "received_at"))')


def _events_stored_at(wh: Warehouse) -> None:
    """Session 21: ``events.stored_at`` — when a row was stored (set by every load; null for
    the rows stored before) — and, where the engine has secondary indexes, an index on
    ``coalesce(stored_at, received_at)`` (:data:`_EVENTS_STORED`, built after the
    transaction): event forwarding's floor and pages run on it, so an event stored long after
    its ``received_at`` (a replay, a backlog, an old file) is not skipped."""
    col = TABLES_BY_NAME["events"].column("stored_at")
    wh.execute(
        f'ALTER TABLE "events" ADD COLUMN IF NOT EXISTS "stored_at" {wh.column_type(col.type)}',
        (),
    )


def _segment_errors_and_alert_subjects(wh: Warehouse) -> None:
    """Session 20: ``segment_errors`` (a segment's last refresh failed: ``status`` shows it)
    and ``alert_state.subject_state`` (``for:`` and ``repeat:`` per subject)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["segment_errors"]):
        wh.execute(sql, ())
    col = TABLES_BY_NAME["alert_state"].column("subject_state")
    wh.execute(
        f"ALTER TABLE alert_state ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )


def _destination_identifiers(wh: Warehouse) -> None:
    """Session 20: ``destination_identifiers`` (an ad audience's identifiers as keyed hashes,
    per record) and ``destination_state.identifiers_key``; records stored before are hashed
    from their encrypted state by the next push that removes anyone."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["destination_identifiers"]):
        wh.execute(sql, ())
    col = TABLES_BY_NAME["destination_state"].column("identifiers_key")
    wh.execute(
        f"ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )


def _console_sessions(wh: Warehouse) -> None:
    """Session 21: ``console_sessions`` (a console sign-out ends the session server-side)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["console_sessions"]):
        wh.execute(sql, ())


def _segment_error_kinds(wh: Warehouse) -> None:
    """Session 21: ``segment_errors.kind`` — what failed (``sql``, ``cap``, ``timeout``), so
    whether a real-time refresh may clear it no longer hangs on the message's words. Rows stored
    before get theirs once from their text (as it was worded then: a timeout among them was
    recorded by a whole refresh or by the real-time path — taken as a whole refresh's, which only
    the next whole refresh clears, as before)."""
    col = TABLES_BY_NAME["segment_errors"].column("kind")
    wh.execute(
        f"ALTER TABLE segment_errors ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )
    wh.execute(
        "UPDATE segment_errors SET kind = CASE WHEN error LIKE ? THEN 'cap' "
        "WHEN error LIKE ? THEN 'timeout' ELSE 'sql' END WHERE kind IS NULL",
        ["%more than the cap%", "%ran longer than%"],
    )


def _segment_error_kinds_required(wh: Warehouse) -> None:
    """Session 22: ``segment_errors.kind`` NOT NULL on every warehouse. Migration 39 added it
    nullable where the table was already there (created by migration 35 before the column
    existed); a warehouse whose migration 35 ran later created it NOT NULL. Rows still without
    one (written by a process older than 39 while it ran) get theirs from their text, as 39
    did; then the column is required, as a new warehouse has it.

    The table is rebuilt (one row per failing segment: small) rather than altered: DuckDB
    refuses ``SET NOT NULL`` on a keyed table after an ``UPDATE`` in the same transaction."""
    table = TABLES_BY_NAME["segment_errors"]
    names = ", ".join(quote(c) for c in table.column_names)
    derived = (
        "coalesce(\"kind\", CASE WHEN error LIKE ? THEN 'cap' "
        "WHEN error LIKE ? THEN 'timeout' ELSE 'sql' END)"
    )
    picked = ", ".join(derived if c == "kind" else quote(c) for c in table.column_names)
    rows = wh.fetch(
        f"SELECT {picked} FROM segment_errors", ["%more than the cap%", "%ran longer than%"]
    )
    wh.execute("DROP TABLE segment_errors", ())
    for sql in create_table_sql(wh, table):
        wh.execute(sql, ())
    for row in rows:
        wh.execute(
            f"INSERT INTO segment_errors ({names}) VALUES ({', '.join('?' for _ in row)})",
            list(row),
        )


def _erasure_links(wh: Warehouse) -> None:
    """Session 21: ``destination_state.erasure_id`` (the erasure that queued a pending removal)
    and ``erasure_progress.erasure_of`` (the erasure an alias row names), so an erasure's report
    shows its own pending removals, asked again by any identifier. Rows from before stay NULL:
    counted among every erasure's only."""
    for table, column in (("destination_state", "erasure_id"), ("erasure_progress", "erasure_of")):
        col = TABLES_BY_NAME[table].column(column)
        wh.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "
            f"{quote(col.name)} {wh.column_type(col.type)}",
            (),
        )


def _looked_for_by_destination(wh: Warehouse) -> None:
    """Session 22: an erasure's rows of the keys it looked for at a destination are named by
    the destination (``step = 'destination_key:NAME'``, so each push drops those before it):
    the rows of before (``destination_key``, no destination) go — no push reads them any more,
    the hashes of erased people's keys — and ``erasure_progress`` is indexed by step and time
    (each push's recording asks whether an erasure reached it since it began)."""
    wh.execute("DELETE FROM erasure_progress WHERE step = 'destination_key'", ())
    if wh.capabilities.secondary_indexes:
        wh.execute(
            'CREATE INDEX IF NOT EXISTS "ix_erasure_progress_step_finished_at" ON '
            '"erasure_progress" ("step", "finished_at")',
            (),
        )


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
    outside any transaction, one process at a time (:data:`_PG_INDEX_LOCK_KEY`); an index a
    crashed or cancelled build left ``INVALID`` (it exists, is kept up to date by every write,
    and serves no query) is dropped, concurrently, and built again. Elsewhere with secondary
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
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", [_PG_INDEX_LOCK_KEY]).fetchone()[0]:
        time.sleep(INDEX_LOCK_POLL_S)
    try:
        for index in indexes:
            state = _index_state(wh, index.name)  # (again, under the lock: another built it?)
            if state == "valid":
                continue
            if state == "invalid":
                log.warning(
                    "index %s on %s was left unfinished (a build interrupted): built again",
                    index.name,
                    index.table,
                )
                conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(index.name)}")
            log.info("building index %s on %s concurrently", index.name, index.table)
            try:
                conn.execute(_create_index(index, concurrently=True))
            except Exception as e:
                raise MigrationError(
                    f"building index {index.name} on {index.table} failed: {e}",
                    hint="run personify again: an unfinished index is dropped and built again",
                ) from e
            built.append(index.name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [_PG_INDEX_LOCK_KEY])
    return built


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
