"""The bodies of the warehouse migrations (:data:`personify.warehouse.migrations.MIGRATIONS`
lists them with their versions; :func:`~personify.warehouse.migrations.migrate` runs each once, in
its own transaction), and :func:`create_table_sql`, which they and the quality checks share."""

from __future__ import annotations

from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import TABLES, TABLES_BY_NAME, VIEWS, Table


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


def add_column(wh: Warehouse, table: str, column: str) -> None:
    """``table``'s ``column`` as the schema declares it, added where it is not there yet
    (``ADD COLUMN IF NOT EXISTS``: a migration run again, or on a table created with it)."""
    col = TABLES_BY_NAME[table].column(column)
    wh.execute(
        f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS "
        f"{quote(col.name)} {wh.column_type(col.type)}",
        (),
    )


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
            add_column(wh, name, column)
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
            add_column(wh, name, column)


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
            add_column(wh, name, column)
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
            add_column(wh, name, column)
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
    add_column(wh, "journey_instances", "waiting_since")


def _destination_keys(wh: Warehouse) -> None:
    """Destinations that remove records: ``destination_state.record_key`` (encrypted)."""
    add_column(wh, "destination_state", "record_key")


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
        add_column(wh, "audit_log", column)
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
        add_column(wh, name, "received_at")
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
        add_column(wh, name, "locale")


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
        add_column(wh, "customers", column)
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
    :data:`~personify.warehouse.migrations._EVENTS_RECEIVED`, built after the transaction)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["event_forwards"]):
        wh.execute(sql, ())


def _events_stored_at(wh: Warehouse) -> None:
    """Session 21: ``events.stored_at`` — when a row was stored (set by every load; null for
    the rows stored before) — and, where the engine has secondary indexes, an index on
    ``coalesce(stored_at, received_at)``
    (:data:`~personify.warehouse.migrations._EVENTS_STORED`, built after the transaction): event
    forwarding's floor and pages run on it, so an event stored long after its ``received_at`` (a
    replay, a backlog, an old file) is not skipped."""
    add_column(wh, "events", "stored_at")


def _segment_errors_and_alert_subjects(wh: Warehouse) -> None:
    """Session 20: ``segment_errors`` (a segment's last refresh failed: ``status`` shows it)
    and ``alert_state.subject_state`` (``for:`` and ``repeat:`` per subject)."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["segment_errors"]):
        wh.execute(sql, ())
    add_column(wh, "alert_state", "subject_state")


def _destination_identifiers(wh: Warehouse) -> None:
    """Session 20: ``destination_identifiers`` (an ad audience's identifiers as keyed hashes,
    per record) and ``destination_state.identifiers_key``; records stored before are hashed
    from their encrypted state by the next push that removes anyone."""
    for sql in create_table_sql(wh, TABLES_BY_NAME["destination_identifiers"]):
        wh.execute(sql, ())
    add_column(wh, "destination_state", "identifiers_key")


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
    add_column(wh, "segment_errors", "kind")
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
    there = {
        str(r[0])
        for r in wh.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'segment_errors'"
        )
    }
    # the columns it has: one a later migration adds is not there yet (the rebuild makes it)
    moved = [c for c in table.column_names if c in there]
    names = ", ".join(quote(c) for c in moved)
    derived = (
        "coalesce(\"kind\", CASE WHEN error LIKE ? THEN 'cap' "
        "WHEN error LIKE ? THEN 'timeout' ELSE 'sql' END)"
    )
    picked = ", ".join(derived if c == "kind" else quote(c) for c in moved)
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
        add_column(wh, table, column)


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
