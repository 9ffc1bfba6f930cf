"""Write the resolution back: ``identities``, and ``customer_id`` on events, orders and tickets.

Only what changed is touched: identifiers of the clusters touched in this pass, events outside it
that carry an identifier whose customer it changed (matched on the stored value:
:data:`~personify.identity.ids.RESTITCH`), and the inputs of this pass (matched after
normalization, so ``" Ann@X.org "`` finds ``ann@x.org``). An event belongs to its ``user_id``'s
customer, else to its ``anonymous_id``'s; an order or ticket to its source customer id's
customer, else to its email's.
"""

from __future__ import annotations

from personify.config import IdentityConfig
from personify.identity.guard import TOUCHED
from personify.identity.ids import CHANGED, RESTITCH
from personify.identity.normalize import blind_of, email_sql, id_sql, sealed_or_blind_sql
from personify.identity.rules import source_kind, source_kind_join
from personify.identity.sightings import EVENT_PAIRS, Scope, Where, load_blind_key
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop

_MAP = "_stitch_map"


def publish_identities(wh: Warehouse) -> None:
    """Mirror the touched clusters' nodes into the public ``identities`` table."""
    wh.execute(
        "DELETE FROM identities WHERE (kind, value) IN (SELECT kind, value FROM identity_nodes "
        f'WHERE "cluster" IN (SELECT "cluster" FROM {TOUCHED}))'
    )
    wh.execute(
        "INSERT INTO identities (customer_id, kind, value, source, first_seen, last_seen) "
        "SELECT customer_id, kind, value, source, first_seen, last_seen FROM identity_nodes "
        f'WHERE customer_id IS NOT NULL AND "cluster" IN (SELECT "cluster" FROM {TOUCHED})'
    )


def _events(wh: Warehouse, scope: Where, *, whole: bool) -> int:
    changed = 0
    # a whole pass over events none of which holds a customer id (a first build): no event can
    # lose one, so the customer-less pairs need no update (1.1 CPU-s of a 1M build to find none)
    unowned = whole and (
        wh.scalar(
            f"SELECT 1 FROM events WHERE customer_id IS NOT NULL AND ({scope[0]}) LIMIT 1", scope[1]
        )
        is None
    )
    if not whole and wh.scalar(f"SELECT 1 FROM {_MAP} LIMIT 1") is not None:
        # events outside this pass that carry a touched identifier, matched on the stored value:
        # an anonymous id's customer where the user id (if any) has none (an anti-join, not a
        # lookup per event; the events are matched in place — joining a derived table of their
        # message ids back to events scanned every stored message id again), then the user
        # id's customer
        changed += wh.execute(
            f"UPDATE events SET customer_id = m.customer_id FROM {_MAP} m "
            "WHERE m.kind = 'anonymous_id' AND events.anonymous_id = m.value "
            "AND events.customer_id IS DISTINCT FROM m.customer_id AND NOT EXISTS (SELECT 1 "
            "FROM identity_nodes u WHERE u.kind = 'user_id' AND u.value = events.user_id "
            "AND u.customer_id IS NOT NULL)"
        )
        changed += wh.execute(
            f"UPDATE events SET customer_id = m.customer_id FROM {_MAP} m "
            "WHERE m.kind = 'user_id' AND events.user_id = m.value "
            "AND m.customer_id IS NOT NULL AND events.customer_id IS DISTINCT FROM m.customer_id"
        )
    # this pass's own events, matched after normalization (ids stored with stray spaces): each
    # distinct (user id, anonymous id) pair (collected with the sightings) is normalized and
    # looked up once
    drop(wh, "_ev_customer")
    wh.execute(
        "CREATE TEMP TABLE _ev_customer AS SELECT k.uid, k.aid, "
        f"coalesce(u.customer_id, a.customer_id) AS customer_id FROM {EVENT_PAIRS} k "
        f"LEFT JOIN identity_nodes u ON u.kind = 'user_id' AND u.value = {id_sql('k.uid')} "
        f"LEFT JOIN identity_nodes a ON a.kind = 'anonymous_id' AND a.value = {id_sql('k.aid')}"
    )
    # two statements: the pairs that found a customer (a hash table of those only — most
    # events of a large pass are anonymous and find none), then the pairs that found none, for
    # the events that still hold a customer id (none in a first build: a filter, not a join)
    pairs = (
        "coalesce(events.user_id, '') = c.uid AND coalesce(events.anonymous_id, '') = c.aid "
        f"AND ({scope[0]})"
    )
    changed += wh.execute(
        "UPDATE events SET customer_id = c.customer_id FROM (SELECT * FROM _ev_customer "
        f"WHERE customer_id IS NOT NULL) c WHERE {pairs} "
        "AND events.customer_id IS DISTINCT FROM c.customer_id",
        scope[1],
    )
    if not unowned:
        changed += wh.execute(
            "UPDATE events SET customer_id = NULL FROM (SELECT * FROM _ev_customer "
            f"WHERE customer_id IS NULL) c WHERE {pairs} AND events.customer_id IS NOT NULL",
            scope[1],
        )
    drop(wh, "_ev_customer")
    return max(changed, 0)


def _owned(
    wh: Warehouse, table: str, key: str, config: IdentityConfig, scope: Where, *, first: bool
) -> int:
    """Orders or tickets: source customer id first, then email; only rows that may change.

    ``first``: every cluster is new, so every row that finds an identifier. Otherwise the rows
    in ``scope`` (this pass's), those without a customer, and those whose customer this pass
    changed (:data:`~personify.identity.ids.CHANGED` holds every id the touched clusters held
    before it and hold now: a row's customer came from one of its identifiers, so a row whose
    identifier moved holds one of them) — picked by a scan of the stored customer ids before
    anything is normalized or joined: with 1M orders stored, a continuous-mode pass normalized
    and joined every order's email (2.3 CPU-s a pass) to find the few that changed."""
    drop(wh, "_own_customer", "_own_rows")
    email, extra = email_sql("t.email", config.email), ""
    blind = blind_of(wh)
    if blind is not None and "email" in blind.kinds:  # the graph holds blind emails
        load_blind_key(wh, blind)  # (computed in a derived table: DuckDB cannot bind the key's
        # subqueries inside a join condition)
        blinded = sealed_or_blind_sql(
            wh.dialect, "email", "email", email_sql("email", config.email)
        )
        extra = f", {blinded} AS blind_email"
        email = "t.blind_email"
    rows = f"(SELECT *{extra} FROM {table})"
    if not first:  # the few rows first, so the joins' hash tables hold them, not the graph's
        wh.execute(
            f"CREATE TEMP TABLE _own_rows AS SELECT {key}, source, source_customer_id, email, "
            f"customer_id{extra} FROM {table} WHERE customer_id IS NULL "
            f"OR customer_id IN (SELECT customer_id FROM {CHANGED}) OR ({scope[0]})",
            scope[1],
        )
        rows = "_own_rows"
    # (first: the rows that find an identifier, and those without a customer)
    found = "WHERE t.customer_id IS NULL OR s.node_id IS NOT NULL OR e.node_id IS NOT NULL"
    wh.execute(
        f"CREATE TEMP TABLE _own_customer AS SELECT t.{key} AS k, "
        "coalesce(s.customer_id, e.customer_id) AS customer_id FROM "
        f"{rows} t {source_kind_join('t.source')} "
        f"LEFT JOIN {_source_id_nodes(table)} s ON s.kind = {source_kind('t.source')} "
        f"AND s.value = {id_sql('t.source_customer_id')} "
        "LEFT JOIN identity_nodes e ON e.kind = 'email' "
        f"AND e.value = {email} " + (found if first else "")
    )
    changed = wh.execute(
        f"UPDATE {table} SET customer_id = c.customer_id FROM _own_customer c "
        f"WHERE {table}.{key} = c.k AND {table}.customer_id IS DISTINCT FROM c.customer_id"
    )
    drop(wh, "_own_customer", "_own_rows")
    return max(changed, 0)


def _source_id_nodes(table: str) -> str:
    """SQL: the nodes of the id kinds of ``table``'s sources only — the join's hash table holds
    those (a shop's customer ids) instead of every identifier of the graph."""
    return (
        "(SELECT * FROM identity_nodes WHERE kind IN (SELECT "
        f"{source_kind('x.source', 'sx')} FROM (SELECT DISTINCT source FROM {table}) x "
        f"{source_kind_join('x.source', 'sx')}))"
    )


def adopt_source_ids(wh: Warehouse) -> None:
    """Orders and tickets loaded with the source's own customer id in ``customer_id``: move it to
    ``source_customer_id`` (``customer_id`` is the resolved one)."""
    for table in ("orders", "tickets"):
        wh.execute(
            f"UPDATE {table} SET source_customer_id = customer_id, customer_id = NULL "
            "WHERE source_customer_id IS NULL AND customer_id IS NOT NULL "
            "AND customer_id NOT IN (SELECT customer_id FROM customer_ids)"
        )


def stitch(
    wh: Warehouse,
    scope: Scope,
    config: IdentityConfig,
    *,
    whole: bool = False,
    first: bool = False,
) -> dict[str, int]:
    """Fill ``customer_id`` where the resolution changed it; returns rows changed per table.

    ``whole``: ``scope.events`` holds every stored event (a first or full pass), so the events
    outside it need no look. ``first``: the first population (:mod:`personify.identity.first`):
    every cluster is new, so there is no :data:`~personify.identity.guard.TOUCHED` to consult."""
    drop(wh, _MAP)
    if not whole:  # (the map finds the events outside the pass)
        # the identifiers whose customer this pass changed (often none: a new visitor's)
        source = RESTITCH
        if first:  # every node is new; a first population not over every event: all of them
            source = "identity_nodes WHERE kind IN ('anonymous_id', 'user_id')"
        wh.execute(f"CREATE TEMP TABLE {_MAP} AS SELECT kind, value, customer_id FROM {source}")
    counts = {
        "events_stitched": _events(wh, scope.events, whole=whole),
        "orders_stitched": _owned(wh, "orders", "order_id", config, scope.orders, first=first),
        "tickets_stitched": _owned(wh, "tickets", "ticket_id", config, scope.tickets, first=first),
    }
    drop(wh, _MAP)
    return counts
