"""Over-merge protection: limits per identifier kind, applied where a cluster breaks one.

Connected components link everything that any evidence links. Most clusters respect the limits
(``user_id: 1`` …) and become one customer each. A cluster that breaks a limit — a shared device
that saw two accounts, an address typed by two people — is split by replaying its links in a
fixed order, strongest first, and refusing each link that would make a part break a limit:

    order: (rank of the link's weaker end, first seen, the two identifiers)

so a shared device goes with the account it saw first, and the answer depends on the evidence
only — never on the order it arrived in (the batch and the real-time path agree). Refused
links are recorded in ``identity_refusals`` with the limit they would have broken. Clusters that
break limits are few and small; they are replayed in Python, the rest stay in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from personify import clock
from personify.identity.rules import STAR_RANK_SQL
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop, scratch, temp_table

TOUCHED = "_touched"
_PARTS = scratch("_guard_parts", node_id="BIGINT", part="BIGINT")
_CLUSTERS = scratch("_guard_clusters", cluster="BIGINT")
_REFUSED = scratch(
    "_guard_refused",
    a="BIGINT",
    b="BIGINT",
    source="VARCHAR",
    cluster="BIGINT",
    reason="VARCHAR",
    detail="VARCHAR",
)


@dataclass(frozen=True)
class Node:
    node_id: int
    kind: str
    value: str
    rank: int
    limit: int | None
    cluster: int = 0


@dataclass(frozen=True)
class Link:
    a: int
    b: int
    source: str
    first_seen: datetime


@dataclass
class Split:
    """The outcome of replaying one cluster: node → part, and the links refused."""

    parts: dict[int, int] = field(default_factory=dict)
    refused: list[tuple[Link, str]] = field(default_factory=list)


def replay(nodes: list[Node], links: list[Link]) -> Split:
    """Union the links in order, refusing those that would break a kind's limit."""
    nodes = sorted(nodes, key=lambda n: n.node_id)
    ids = [n.node_id for n in nodes]
    index = {n: i for i, n in enumerate(ids)}
    kinds = sorted({n.kind for n in nodes if n.limit is not None})
    limits = {n.kind: n.limit for n in nodes if n.limit is not None}
    times = {t: i for i, t in enumerate(sorted({link.first_seen for link in links}))}
    a = [index[link.a] for link in links]
    b = [index[link.b] for link in links]
    order = _order(
        [n.rank for n in nodes],
        _positions([(n.kind, n.value) for n in nodes]),
        np.array(a, np.int64),
        np.array(b, np.int64),
        np.array([times[link.first_seen] for link in links], np.int64),
        _positions([link.source for link in links]),
    )
    parts, refused = _union(
        [kinds.index(n.kind) if n.limit is not None else -1 for n in nodes],
        [limits[k] for k in kinds],
        a,
        b,
        order,
    )
    split = Split(parts={ids[i]: ids[p] for i, p in enumerate(parts)})
    split.refused = [(links[j], _detail(kinds[k], n, limits[kinds[k]])) for j, k, n in refused]
    return split


def _detail(kind: str, held: int, limit: int) -> str:
    return f"the customer would hold {held} {kind} identifiers (limit {limit})"


def _positions(keys: list[Any]) -> np.ndarray:
    """Each key's position in the sorted keys (equal keys, equal positions)."""
    ranked = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([ranked[k] for k in keys], np.int64)


def _order(
    rank: list[int] | np.ndarray,
    key: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    first_seen: np.ndarray,
    source: np.ndarray,
) -> list[int]:
    """The links' replay order — (rank of the weaker end, first seen, the two identifiers'
    (kind, value) smaller first, source), ties in input order — as link indexes.

    ``rank``/``key`` per node (``key``: the position of the node's (kind, value) among the
    cluster's), ``a``/``b`` the links' node indexes, ``first_seen``/``source`` sortable numbers.
    """
    ranks = np.asarray(rank, np.int64)
    ka, kb = key[a], key[b]
    weaker = np.maximum(ranks[a], ranks[b])
    order = np.lexsort((source, np.maximum(ka, kb), np.minimum(ka, kb), first_seen, weaker))
    return [int(i) for i in order.tolist()]


def _union(
    kind: list[int], limit: list[int], a: list[int], b: list[int], order: list[int]
) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The replay itself, over node indexes (ordered like the node ids: the part of a node is
    the smallest node of its part). ``kind[i]``: index of node ``i``'s limited kind (``-1``:
    no limit), ``limit[k]`` its limit. Returns each node's part and the refused links as
    ``(link index, limited kind index, identifiers the part would hold)`` — the first kind
    (in ``limit``'s order) that would break."""
    n_kinds = len(limit)
    parent = list(range(len(kind)))
    refused: list[tuple[int, int, int]] = []
    if n_kinds == 1:  # the usual case (``user_id: 1``): a count per part, no tuples
        held = [int(k == 0) for k in kind]
        most = limit[0]
        for j in order:
            ra = a[j]
            while parent[ra] != ra:
                parent[ra] = parent[parent[ra]]
                ra = parent[ra]
            rb = b[j]
            while parent[rb] != rb:
                parent[rb] = parent[parent[rb]]
                rb = parent[rb]
            if ra == rb:
                continue
            total = held[ra] + held[rb]
            if total > most:
                refused.append((j, 0, total))
                continue
            if ra < rb:
                parent[rb] = ra
                held[ra] = total
            else:
                parent[ra] = rb
                held[rb] = total
        return _roots(parent), refused
    counts: list[tuple[int, ...] | None] = [
        None if k < 0 else tuple(int(j == k) for j in range(n_kinds)) for k in kind
    ]
    kinds = range(n_kinds)
    for j in order:
        ra = a[j]
        while parent[ra] != ra:
            parent[ra] = parent[parent[ra]]
            ra = parent[ra]
        rb = b[j]
        while parent[rb] != rb:
            parent[rb] = parent[parent[rb]]
            rb = parent[rb]
        if ra == rb:
            continue
        ca, cb = counts[ra], counts[rb]
        if ca is None:
            merged = cb
        elif cb is None:
            merged = ca
        else:
            merged = tuple([x + y for x, y in zip(ca, cb, strict=True)])
            broken = -1
            for k in kinds:
                if merged[k] > limit[k]:
                    broken = k
                    break
            if broken >= 0:
                refused.append((j, broken, merged[broken]))
                continue
        keep, gone = (ra, rb) if ra < rb else (rb, ra)
        parent[gone] = keep
        counts[keep] = merged
        counts[gone] = None
    return _roots(parent), refused


def _roots(parent: list[int]) -> list[int]:
    """Each node's root in the union-find forest ``parent`` (compressed in place)."""
    for i in range(len(parent)):
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    return parent


def _violating(wh: Warehouse) -> list[int]:
    rows = wh.fetch(
        'SELECT DISTINCT n."cluster" FROM identity_nodes n '
        f'JOIN {TOUCHED} t ON t."cluster" = n."cluster" '
        "JOIN _id_kinds ik ON ik.kind = n.kind AND ik.max_count IS NOT NULL "
        'WHERE NOT n.blocked GROUP BY n."cluster", n.kind, ik.max_count '
        "HAVING count(*) > ik.max_count ORDER BY 1"
    )
    return [int(r[0]) for r in rows]


def _load(wh: Warehouse) -> tuple[pa.Table, pa.Table]:
    """The nodes (by id) and links of the :data:`_CLUSTERS` to replay, as Arrow tables."""
    nodes = wh.fetch_arrow(
        'SELECT n.node_id, n.kind, n.value, n.part, n."cluster", '
        f"coalesce(ik.rank, {STAR_RANK_SQL}) AS rank, ik.max_count FROM identity_nodes n "
        f'JOIN {_CLUSTERS.name} g ON g."cluster" = n."cluster" '
        "LEFT JOIN _id_kinds ik ON ik.kind = n.kind WHERE NOT n.blocked ORDER BY n.node_id"
    )
    links = wh.fetch_arrow(
        "SELECT e.a, e.b, e.source, e.first_seen FROM identity_edges e "
        "JOIN identity_nodes na ON na.node_id = e.a JOIN identity_nodes nb "
        f'ON nb.node_id = e.b JOIN {_CLUSTERS.name} g ON g."cluster" = na."cluster" '
        "WHERE NOT na.blocked AND NOT nb.blocked"
    )
    return nodes, links


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def _split(nodes: pa.Table, links: pa.Table) -> tuple[np.ndarray, pa.Table]:
    """:func:`replay` over Arrow columns: each node's part, and the refused links as rows of
    ``identity_refusals`` (without ``decided_at``)."""
    ids = _column(nodes, "node_id").astype(np.int64)
    kinds = nodes.column("kind").to_pylist()
    values = nodes.column("value").to_pylist()
    limit_of = dict(
        zip(kinds, nodes.column("max_count").to_pylist(), strict=True)
    )  # one limit per kind
    limited = sorted(k for k, n in limit_of.items() if n is not None)
    position = {k: i for i, k in enumerate(limited)}
    a = np.searchsorted(ids, _column(links, "a").astype(np.int64))
    b = np.searchsorted(ids, _column(links, "b").astype(np.int64))
    first_seen = links.column("first_seen").cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = _order(
        _column(nodes, "rank"),
        _positions(list(zip(kinds, values, strict=True))),
        a,
        b,
        np.asarray(first_seen, np.int64),
        _positions(links.column("source").to_pylist()),
    )
    parts, refused = _union(
        [position.get(k, -1) for k in kinds],
        [int(limit_of[k]) for k in limited],
        a.tolist(),
        b.tolist(),
        order,
    )
    details: dict[tuple[int, int], str] = {}
    chosen = np.array([j for j, _, _ in refused], np.int64)
    detail = [
        details.get((k, n))
        or details.setdefault((k, n), _detail(limited[k], n, limit_of[limited[k]]))
        for _, k, n in refused
    ]
    clusters = _column(nodes, "cluster").astype(np.int64)
    rows = pa.table(
        {
            "a": pa.array(_column(links, "a")[chosen], pa.int64()),
            "b": pa.array(_column(links, "b")[chosen], pa.int64()),
            "source": links.column("source").take(pa.array(chosen, pa.int64())),
            "cluster": pa.array(clusters[a[chosen]], pa.int64()),
            "reason": pa.array(["limit_exceeded"] * len(refused), pa.string()),
            "detail": pa.array(detail, pa.string()),
        }
    )
    return ids[np.array(parts, np.int64)], rows


def apply_limits(wh: Warehouse) -> dict[str, int]:
    """Set ``part`` for every node of the :data:`TOUCHED` clusters; record refused merges.

    Only what changes is written: a cluster within the limits has ``part = cluster``; a cluster
    that breaks one is replayed (:func:`replay`) and its nodes whose part moved are updated; its
    refusals are replaced where they differ (one that stands keeps its ``decided_at``)."""
    clusters = _violating(wh)
    temp_table(wh, _CLUSTERS, pa.table({"cluster": pa.array(clusters, pa.int64())}))
    wh.execute(
        'UPDATE identity_nodes SET part = "cluster" WHERE part <> "cluster" AND '
        f'"cluster" IN (SELECT "cluster" FROM {TOUCHED}) AND '
        f'"cluster" NOT IN (SELECT "cluster" FROM {_CLUSTERS.name})'
    )
    refused = pa.table(
        {
            "a": pa.array([], pa.int64()),
            "b": pa.array([], pa.int64()),
            "source": pa.array([], pa.string()),
            "cluster": pa.array([], pa.int64()),
            "reason": pa.array([], pa.string()),
            "detail": pa.array([], pa.string()),
        }
    )
    if clusters:
        nodes, links = _load(wh)
        parts, refused = _split(nodes, links)
        moved = parts != _column(nodes, "part").astype(np.int64)
        temp_table(
            wh,
            _PARTS,
            pa.table(
                {
                    "node_id": pa.array(_column(nodes, "node_id")[moved], pa.int64()),
                    "part": pa.array(parts[moved], pa.int64()),
                }
            ),
        )
        wh.execute(
            f"UPDATE identity_nodes SET part = p.part FROM {_PARTS.name} p "
            "WHERE identity_nodes.node_id = p.node_id"
        )
    _record(wh, refused)
    drop(wh, _PARTS.name, _CLUSTERS.name, _REFUSED.name)
    return {"clusters_split": len(clusters), "merges_refused": refused.num_rows}


_SAME = (
    'g.a = r.a AND g.b = r.b AND g.source = r.source AND g."cluster" = r."cluster" '
    "AND g.reason = r.reason AND g.detail = r.detail"
)


def _record(wh: Warehouse, refused: pa.Table) -> None:
    """The :data:`TOUCHED` clusters' refusals become ``refused``: those that no longer stand
    are deleted, new (or changed) ones stored at the clock's time."""
    temp_table(wh, _REFUSED, refused)
    wh.execute(
        f'DELETE FROM identity_refusals r WHERE (r."cluster" IN (SELECT "cluster" FROM {TOUCHED}) '
        f"OR EXISTS (SELECT 1 FROM {_REFUSED.name} g WHERE g.a = r.a AND g.b = r.b "
        f"AND g.source = r.source)) AND NOT EXISTS (SELECT 1 FROM {_REFUSED.name} g WHERE {_SAME})"
    )
    if refused.num_rows:
        wh.execute(
            'INSERT INTO identity_refusals (a, b, source, "cluster", reason, detail, decided_at) '
            f'SELECT g.a, g.b, g.source, g."cluster", g.reason, g.detail, ? FROM {_REFUSED.name} g '
            "WHERE NOT EXISTS (SELECT 1 FROM identity_refusals r WHERE r.a = g.a AND r.b = g.b "
            "AND r.source = g.source)",
            [clock.now()],
        )
