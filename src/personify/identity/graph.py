"""The identity graph in the warehouse: nodes (identifiers) and edges (evidence).

:func:`add_sightings` turns :data:`~personify.identity.sightings.SIGHTED` into

* new ``identity_nodes`` (ids continue the sequence, in order of first sighting, kind, value;
  a new node is its own cluster and part) and updated first/last seen times of known ones;
* edges: inside each sighting group every identifier is linked to the group's strongest
  identifier that is not blocked (kind priority, then kind, then value) — a star, so a record
  with *k* identifiers adds *k − 1* edges;
* ``_delta (a, b)``: links between nodes that had none before, the input of incremental
  connected components; and ``_touched_nodes (node_id, fresh)``: every node sighted, ``fresh``
  when this pass added it.
"""

from __future__ import annotations

from personify.identity.rules import STAR_RANK_SQL, blocked_join
from personify.identity.sightings import SIGHTED
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop, first_by

DELTA = "_delta"
TOUCHED_NODES = "_touched_nodes"

_RANK = f"coalesce(ik.rank, {STAR_RANK_SQL})"


_SIGHTED_NODES = "_sighted_nodes"
"""``(node_id, kind, value, blocked)``: the nodes of this pass's sighted identifiers, for the
joins that follow — the graph's own ``(kind, value)`` strings are scanned once a pass (a join
of them against the sighted ones cost ~60 ms per pass over 1.7M identifiers, and it ran four
times)."""


SOURCES = "_sighted_sources"
_RANGE_BITS = 62
"""The packed key of :func:`identifiers` holds microseconds within ±2^(this − source bits)."""


def identifiers(wh: Warehouse) -> str:
    """SQL: every distinct ``(kind, value)`` of :data:`SIGHTED` once, with the ``source`` of
    its first sighting (ties: the smallest source), ``first_seen`` and ``last_seen``.

    DuckDB: the first sighting's source rides in one integer ``min``: the sighting's
    microsecond times 2ᵇ plus the source's number in name order (:data:`SOURCES`, a few rows),
    decoded after the grouping by a shift and a mask. An ``arg_min`` keyed on a row of the
    time and the source cost twice as much as the grouping without it (1M build: 8.4M
    sightings into 5.5M identifiers, 4.4 → 2.4 CPU-s). Times too far from 1970 for the packed
    key to hold (none, in practice) take that ``arg_min``."""
    generic = (
        f"SELECT kind, value, {first_by(wh, 'source', 'first_seen')} AS source, "
        f"min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM {SIGHTED} "
        "GROUP BY kind, value"
    )
    if wh.dialect != "duckdb":
        return generic
    drop(wh, SOURCES)
    wh.execute(
        f"CREATE TEMP TABLE {SOURCES} AS SELECT source, CAST(row_number() OVER "
        f"(ORDER BY source) - 1 AS BIGINT) AS code FROM (SELECT DISTINCT source FROM {SIGHTED}) s"
    )
    sources, low, high = wh.fetch(
        f"SELECT (SELECT count(*) FROM {SOURCES}), min(epoch_us(first_seen)), "
        f"max(epoch_us(first_seen)) FROM {SIGHTED}"
    )[0]
    bits = max(1, (int(sources) - 1).bit_length())
    if low is not None and (bits > 16 or max(-int(low), int(high)) >= 1 << (_RANGE_BITS - bits)):
        return generic
    return (
        "SELECT g.kind, g.value, c.source, "
        f"make_timestamptz(g.k >> {bits}) AS first_seen, g.last_seen FROM (SELECT s.kind, "
        f"s.value, min(epoch_us(s.first_seen) * {1 << bits} + c.code) AS k, "
        f"max(s.last_seen) AS last_seen FROM {SIGHTED} s JOIN {SOURCES} c "
        f"ON c.source = s.source GROUP BY s.kind, s.value) g JOIN {SOURCES} c "
        f"ON c.code = g.k & {(1 << bits) - 1}"
    )


def _nodes(wh: Warehouse) -> int:
    """Insert unseen identifiers as nodes; widen the seen times of known ones."""
    drop(wh, "_sighted_ids", _SIGHTED_NODES)
    wh.execute(
        "CREATE TEMP TABLE _sighted_ids AS SELECT s.*, n.node_id, n.blocked, "
        f"n.first_seen AS known_first, n.last_seen AS known_last FROM ({identifiers(wh)}) s "
        "LEFT JOIN identity_nodes n ON n.kind = s.kind AND n.value = s.value"
    )
    wh.execute(
        "UPDATE identity_nodes SET first_seen = least(identity_nodes.first_seen, s.first_seen), "
        "last_seen = greatest(identity_nodes.last_seen, s.last_seen) FROM (SELECT * FROM "
        "_sighted_ids WHERE first_seen < known_first OR last_seen > known_last) s "
        "WHERE identity_nodes.node_id = s.node_id"
    )
    base = int(wh.scalar("SELECT coalesce(max(node_id), 0) FROM identity_nodes") or 0)
    joins, blocked = blocked_join("s.kind", "s.value")
    added = wh.execute(
        "INSERT INTO identity_nodes (node_id, kind, value, source, first_seen, last_seen, "
        'blocked, "cluster", part) SELECT id, kind, value, source, first_seen, last_seen, '
        "blocked, id, id FROM (SELECT ? + row_number() OVER (ORDER BY s.first_seen, s.kind, "
        "s.value) AS id, s.kind, s.value, s.source, s.first_seen, s.last_seen, "
        f"{blocked} AS blocked FROM _sighted_ids s {joins} WHERE s.node_id IS NULL) fresh",
        [base],
    )
    wh.execute(
        f"CREATE TEMP TABLE {_SIGHTED_NODES} AS SELECT node_id, kind, value, blocked "
        "FROM _sighted_ids WHERE node_id IS NOT NULL UNION ALL SELECT node_id, kind, value, "
        "blocked FROM identity_nodes WHERE node_id > ?",
        [base],
    )
    drop(wh, TOUCHED_NODES)
    wh.execute(
        f"CREATE TEMP TABLE {TOUCHED_NODES} AS SELECT node_id, node_id > ? AS fresh "
        f"FROM {_SIGHTED_NODES}",
        [base],
    )
    drop(wh, "_sighted_ids", SOURCES)
    return max(added, 0)


def star_edges(wh: Warehouse, nodes: str, *, blocked: bool = False) -> None:
    """``_new_edges (a, b, source, evidence, origin, first_seen, last_seen)``: each sighting
    group's identifiers linked to its centre, from ``nodes`` (a table of ``grp, node_id, source,
    first_seen, last_seen, evidence, origin, blocked, rank, kind, value`` per sighting).

    ``blocked``: also a ``blocked`` column, true when an end is blocked. A group's centre is
    blocked only when all its identifiers are, so that is the non-centre end's own flag."""
    drop(wh, "_grp_centers", "_new_edges")
    # each group's centre: an aggregate, not a window sorting every group's identifiers
    center = first_by(wh, "node_id", "blocked", "rank", "kind", "value")
    wh.execute(
        f"CREATE TEMP TABLE _grp_centers AS SELECT grp, {center} AS center FROM {nodes} "
        "GROUP BY grp"
    )
    wh.execute(
        "CREATE TEMP TABLE _new_edges AS SELECT least(c.center, o.node_id) AS a, "
        "greatest(c.center, o.node_id) AS b, o.source, min(o.evidence) AS evidence, "
        f"{first_by(wh, 'o.origin', 'o.first_seen')} AS origin, "
        "min(o.first_seen) AS first_seen, max(o.last_seen) AS last_seen"
        f"{', bool_or(o.blocked) AS blocked' if blocked else ''} "
        f"FROM {nodes} o JOIN _grp_centers c ON c.grp = o.grp "
        "WHERE o.node_id <> c.center GROUP BY 1, 2, 3"
    )
    drop(wh, "_grp_centers")


def _edges(wh: Warehouse) -> int:
    """Star edges per sighting group; upsert them; keep the pairs that are new in ``_delta``."""
    drop(wh, "_grp_nodes", DELTA)
    wh.execute(
        "CREATE TEMP TABLE _grp_nodes AS SELECT s.grp, n.node_id, s.source, s.first_seen, "
        f"s.last_seen, s.evidence, s.origin, n.blocked, {_RANK} AS rank, n.kind, n.value "
        f"FROM {SIGHTED} s JOIN {_SIGHTED_NODES} n ON n.kind = s.kind AND n.value = s.value "
        "LEFT JOIN _id_kinds ik ON ik.kind = n.kind WHERE s.linked"
    )
    star_edges(wh, "_grp_nodes")
    wh.execute(
        f"CREATE TEMP TABLE {DELTA} AS SELECT DISTINCT e.a, e.b FROM _new_edges e "
        "LEFT JOIN identity_edges x ON x.a = e.a AND x.b = e.b WHERE x.a IS NULL"
    )
    wh.execute(
        "UPDATE identity_edges SET first_seen = least(identity_edges.first_seen, e.first_seen), "
        "last_seen = greatest(identity_edges.last_seen, e.last_seen) FROM _new_edges e "
        "WHERE identity_edges.a = e.a AND identity_edges.b = e.b "
        "AND identity_edges.source = e.source AND (e.first_seen < identity_edges.first_seen "
        "OR e.last_seen > identity_edges.last_seen)"
    )
    added = wh.execute(
        "INSERT INTO identity_edges (a, b, source, evidence, origin, first_seen, last_seen) "
        "SELECT e.a, e.b, e.source, e.evidence, e.origin, e.first_seen, e.last_seen "
        "FROM _new_edges e LEFT JOIN identity_edges x ON x.a = e.a AND x.b = e.b "
        "AND x.source = e.source WHERE x.a IS NULL"
    )
    drop(wh, "_grp_nodes", "_new_edges")
    return max(added, 0)


def add_sightings(wh: Warehouse) -> dict[str, int]:
    """Grow the graph from :data:`SIGHTED`; counts of new nodes and edges."""
    nodes = _nodes(wh)
    edges = _edges(wh)
    drop(wh, _SIGHTED_NODES)
    return {"identifiers_added": nodes, "links_added": edges}


def reset(wh: Warehouse) -> None:
    """Forget the graph (a full rebuild follows); customer ids are kept by the caller."""
    for name in ("identity_edges", "identity_refusals", "identity_nodes"):
        wh.execute(f"DELETE FROM {name}")
