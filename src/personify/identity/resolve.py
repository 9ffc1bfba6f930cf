"""One resolution pass, shared by the batch stage and the real-time path.

A pass reads the inputs of a :class:`~personify.identity.sightings.Scope` (the batch: everything
received since the last pass; the real-time path: one event or record), then:

1. sightings → nodes and edges (:mod:`~personify.identity.graph`);
2. connected components over the *new* links only, between the clusters they join
   (:mod:`~personify.identity.components`): existing clusters act as single nodes, so the work
   is proportional to what arrived, not to the graph;
3. limits on the clusters that changed (:mod:`~personify.identity.guard`);
4. customer ids (:mod:`~personify.identity.ids`);
5. ``identities``, and ``customer_id`` on events, orders, tickets
   (:mod:`~personify.identity.stitch`).

When the identity rules change (their fingerprint), the graph is rebuilt from every input,
keeping the customer ids it had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from personify.config import IdentityConfig
from personify.identity import first as first_mod
from personify.identity import graph, state
from personify.identity.components import LABELS, ComponentsReport, connected_components
from personify.identity.guard import TOUCHED, apply_limits
from personify.identity.ids import CHANGED, RESTITCH, assign_ids
from personify.identity.normalize import blind_of, blind_sql
from personify.identity.rules import fingerprint, load_rules
from personify.identity.sightings import EVENT_PAIRS, NOTHING, Scope, collect, load_blind_key
from personify.identity.stitch import adopt_source_ids, publish_identities, stitch
from personify.identity.tables import WRITES
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop

_ALL: tuple[str, tuple[object, ...]] = ("TRUE", ())


@dataclass
class PassReport:
    """What one pass did."""

    counts: dict[str, int] = field(default_factory=dict)
    components: ComponentsReport = field(default_factory=ComponentsReport)
    changed_customers: list[str] = field(default_factory=list)


def _components(wh: Warehouse, config: IdentityConfig) -> ComponentsReport:
    report = connected_components(
        wh,
        'SELECT na."cluster" AS a, nb."cluster" AS b FROM _delta d '
        "JOIN identity_nodes na ON na.node_id = d.a JOIN identity_nodes nb ON nb.node_id = d.b "
        "WHERE NOT na.blocked AND NOT nb.blocked",
        max_rounds=config.max_rounds,
    )
    if report.rounds:
        for table in ("identity_nodes", "identity_refusals"):
            wh.execute(
                f'UPDATE {table} SET "cluster" = l.label FROM {LABELS} l '
                f'WHERE {table}."cluster" = l.node'
            )
    drop(wh, LABELS, TOUCHED)
    wh.execute(
        f'CREATE TEMP TABLE {TOUCHED} AS SELECT DISTINCT n."cluster" FROM identity_nodes n '
        f"JOIN {graph.TOUCHED_NODES} t ON t.node_id = n.node_id"
    )
    return report


def run_pass(
    wh: Warehouse,
    config: IdentityConfig,
    scope: Scope,
    *,
    restore_ids: bool = False,
    all_events: bool = False,
) -> PassReport:
    """Resolve the inputs in ``scope`` (inside the caller's transaction, rules loaded).

    ``all_events``: ``scope.events`` selects every stored event (the first pass, a rebuild)."""
    report = PassReport()
    report.counts["identifiers_sighted"] = collect(wh, scope, config)
    report.counts |= graph.add_sightings(wh)
    if restore_ids:
        _restore_ids(wh)
    report.components = _components(wh, config)
    report.counts["clusters_changed"] = int(wh.scalar(f"SELECT count(*) FROM {TOUCHED}") or 0)
    report.counts |= apply_limits(wh)
    report.counts |= assign_ids(wh)
    publish_identities(wh)
    report.counts |= stitch(wh, scope, config, whole=all_events)
    report.changed_customers = [
        str(r[0]) for r in wh.fetch(f"SELECT customer_id FROM {CHANGED} ORDER BY 1")
    ]
    drop(wh, TOUCHED, graph.TOUCHED_NODES, graph.DELTA, CHANGED, RESTITCH, EVENT_PAIRS)
    report.counts["rounds"] = report.components.rounds
    return report


def _keep_ids(wh: Warehouse) -> None:
    drop(wh, "_kept_ids")
    wh.execute(
        "CREATE TEMP TABLE _kept_ids AS SELECT node_id, kind, value, customer_id "
        "FROM identity_nodes"
    )
    blind = blind_of(wh)
    if blind is not None:  # encryption turned on: the rebuilt graph's emails/phones are blind
        load_blind_key(wh, blind)
        for kind in blind.kinds:
            wh.execute(
                f"UPDATE _kept_ids SET value = {blind_sql(wh.dialect, kind, 'value')} "
                f"WHERE kind = '{kind}' AND NOT regexp_matches(value, '^[0-9a-f]{{64}}$')"
            )


def _restore_ids(wh: Warehouse) -> None:
    wh.execute(
        "UPDATE identity_nodes SET customer_id = k.customer_id FROM _kept_ids k "
        "WHERE identity_nodes.kind = k.kind AND identity_nodes.value = k.value "
        "AND k.customer_id IS NOT NULL"
    )
    # observations point at nodes: follow them to the rebuilt nodes
    wh.execute(
        "UPDATE profile_observations SET node_id = m.new_id FROM (SELECT k.node_id AS old_id, "
        "n.node_id AS new_id FROM _kept_ids k JOIN identity_nodes n ON n.kind = k.kind "
        "AND n.value = k.value) m WHERE profile_observations.node_id = m.old_id"
    )
    drop(wh, "_kept_ids")


def resolve_batch(
    wh: Warehouse, config: IdentityConfig, *, first_population: bool = True
) -> PassReport:
    """The batch pass: everything received since the last one (all of it when rules changed).

    When the graph is empty (the first build), the pass is the set-based first population
    (:mod:`personify.identity.first`) — the same result without the incremental bookkeeping;
    ``first_population=False`` forces the general pass (tests compare the two)."""
    with wh.transaction():
        wh.hold(*WRITES)
        load_rules(wh, config)
        digest = fingerprint(config)
        blind = blind_of(wh)
        if blind is not None:  # turning encryption on (or a new blind key) rebuilds the graph
            digest += f":blind:{blind.tag}"
        full = state.get(wh, "identity.fingerprint") != digest
        # first population: a full pass with no graph, hence no customer ids to keep
        first = full and first_population and first_mod.graph_is_empty(wh)
        if full and not first:
            _keep_ids(wh)
            graph.reset(wh)
            wh.execute("DELETE FROM identities")
        adopt_source_ids(wh)
        events_wm = None if full else state.get_instant(wh, "identity.events")
        records_wm = None if full else state.get_instant(wh, "identity.records")
        events_to = state.latest(wh, "events")
        records_to = state.latest(wh, "customer_records")
        scope = Scope(
            events=_window(events_wm, events_to),
            records=_window(records_wm, records_to),
            orders=_ALL if full else ("customer_id IS NULL", ()),
            tickets=_ALL if full else ("customer_id IS NULL", ()),
        )
        all_events = events_wm is None and bool(events_to)
        if first:
            report = _first_population(wh, config, scope, all_events=all_events)
        else:
            report = run_pass(wh, config, scope, restore_ids=full, all_events=all_events)
        state.put(wh, "identity.fingerprint", digest)
        if events_to:
            state.put(wh, "identity.events", events_to.isoformat())
        if records_to:
            state.put(wh, "identity.records", records_to.isoformat())
        report.counts["full_rebuild"] = int(full)
        report.counts["first_population"] = int(first)
    return report


def _first_population(
    wh: Warehouse, config: IdentityConfig, scope: Scope, *, all_events: bool
) -> PassReport:
    done = first_mod.populate(wh, config, scope, all_events=all_events)
    return PassReport(done.counts, done.components, done.changed_customers)


def _window(after: object, upto: object) -> tuple[str, tuple[object, ...]]:
    if upto is None:
        return NOTHING
    if after is None:
        return ("received_at <= ?", (upto,))
    # from the mark itself: rows stored at the very instant of the last pass (a fixed --now, a
    # file imported in the same microsecond) are read again — passes are idempotent — not lost
    return ("received_at >= ? AND received_at <= ?", (after, upto))
