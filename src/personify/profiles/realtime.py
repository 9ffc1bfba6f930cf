"""The real-time path: one event or record updates its customer at once, in process.

It runs the very pass the batch stage runs (:func:`personify.identity.run_pass`), restricted to
that one input, then rebuilds only the customers it touched with the very SQL of the batch
build — so the two paths cannot disagree. Applying an input twice changes nothing.

What the batch privacy stage does for its inputs, the pass does for its own, before it commits:
the email/phone nodes it added re-link the suppression tombstones of their addresses (an erased
person re-created here is not marketable again, :mod:`personify.privacy.tombstones`), and with
``privacy.encrypted_fields`` the customers, records, orders and tickets it read are sealed.
"""

from __future__ import annotations

from collections.abc import Sequence

from personify.identity.resolve import run_pass
from personify.identity.rules import load_rules
from personify.identity.sightings import NOTHING, Scope
from personify.identity.tables import WRITES
from personify.privacy.fields import (
    from_project,
    seal_customers,
    seal_input_emails,
    seal_records,
)
from personify.privacy.hashing import optional_key
from personify.privacy.tombstones import relink_new_nodes, top_node
from personify.profiles.build import build_customers
from personify.profiles.observations import collect_observations
from personify.realtime import invalidate_customers
from personify.session import Session


def apply(session: Session, scope: Scope, customers: Sequence[str] = ()) -> list[str]:
    """Resolve and rebuild what the inputs in ``scope`` touch; returns the customer ids."""
    wh, project = session.warehouse, session.project
    config = project.config.identity
    with wh.transaction():
        wh.hold(*WRITES)
        load_rules(wh, config)
        key = optional_key(project)
        report = run_pass(wh, config, scope)
        added = int(report.counts.get("identifiers_added", 0))
        if key is not None and added:  # before anything reacts to the (re-)created customers
            # the pass numbered its new nodes after the highest one: they are the last `added`
            relink_new_nodes(wh, key, top_node(wh) - added)
        collect_observations(wh, scope, config)
        ids = sorted(set(report.changed_customers) | set(customers) | _owners(session, scope))
        build_customers(wh, project, ids)
        cipher = from_project(project)  # privacy.encrypted_fields: sealed before commit
        if cipher is not None and ids:
            seal_customers(wh, cipher, ids)
        if cipher is not None and scope.records != NOTHING:  # the record's own values too
            seal_records(wh, cipher, scope.records)
        pairs = (("orders", scope.orders), ("tickets", scope.tickets))
        inputs = {t: w for t, w in pairs if w != NOTHING}
        if cipher is not None and inputs:  # an order's or a ticket's email, as the batch does
            seal_input_emails(wh, cipher, inputs)
    invalidate_customers(wh, project, ids)  # again, now that the transaction committed
    return ids


def _owners(session: Session, scope: Scope) -> set[str]:
    wh, found = session.warehouse, set()
    for table, where in (("events", scope.events), ("orders", scope.orders)):
        rows = wh.fetch(
            f"SELECT DISTINCT customer_id FROM {table} WHERE customer_id IS NOT NULL "
            f"AND ({where[0]})",
            where[1],
        )
        found |= {str(r[0]) for r in rows}
    return found


def apply_event(session: Session, message_id: str) -> list[str]:
    """Apply one stored event (by ``message_id``)."""
    return apply(session, Scope(events=("message_id = ?", (message_id,))))


def apply_record(session: Session, source: str, record_id: str) -> list[str]:
    """Apply one stored person record (every version of it)."""
    return apply(session, Scope(records=("source = ? AND record_id = ?", (source, record_id))))


def apply_order(session: Session, order_id: str) -> list[str]:
    """Apply one stored order."""
    return apply(session, Scope(orders=("order_id = ?", (order_id,))))
