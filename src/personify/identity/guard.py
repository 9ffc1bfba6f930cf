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

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from personify import clock
from personify.identity._sql import drop, scratch, temp_table
from personify.identity.rules import STAR_RANK_SQL
from personify.warehouse.base import Warehouse
from personify.warehouse.schema import IDENTITY_REFUSALS

TOUCHED = "_touched"
_PARTS = scratch("_guard_parts", node_id="BIGINT", part="BIGINT")


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
    by_id = {n.node_id: n for n in nodes}
    parent = {n.node_id: n.node_id for n in nodes}
    counts = {n.node_id: Counter({n.kind: 1}) for n in nodes if n.limit is not None}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def order(link: Link) -> tuple[Any, ...]:
        a, b = by_id[link.a], by_id[link.b]
        keys = sorted([(a.kind, a.value), (b.kind, b.value)])
        return (max(a.rank, b.rank), link.first_seen, keys, link.source)

    limits = {n.kind: n.limit for n in nodes if n.limit is not None}
    split = Split()
    for link in sorted(links, key=order):
        ra, rb = find(link.a), find(link.b)
        if ra == rb:
            continue
        merged = counts.get(ra, Counter()) + counts.get(rb, Counter())
        broken = sorted(k for k, n in merged.items() if n > limits[k])
        if broken:
            kind = broken[0]
            split.refused.append(
                (
                    link,
                    f"the customer would hold {merged[kind]} {kind} identifiers "
                    f"(limit {limits[kind]})",
                )
            )
            continue
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        if merged:
            counts[keep] = merged
        counts.pop(gone, None)
    split.parts = {n: find(n) for n in parent}
    return split


def _violating(wh: Warehouse) -> list[int]:
    rows = wh.fetch(
        'SELECT DISTINCT n."cluster" FROM identity_nodes n '
        f'JOIN {TOUCHED} t ON t."cluster" = n."cluster" '
        "JOIN _id_kinds ik ON ik.kind = n.kind AND ik.max_count IS NOT NULL "
        'WHERE NOT n.blocked GROUP BY n."cluster", n.kind, ik.max_count '
        "HAVING count(*) > ik.max_count ORDER BY 1"
    )
    return [int(r[0]) for r in rows]


def _load(wh: Warehouse, clusters: list[int]) -> tuple[list[Node], list[Link]]:
    drop(wh, "_guard_clusters")
    temp_table(
        wh,
        scratch("_guard_clusters", cluster="BIGINT"),
        pa.table({"cluster": pa.array(clusters, pa.int64())}),
    )
    nodes = [
        Node(int(r[0]), r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]), int(r[5]))
        for r in wh.fetch(
            "SELECT n.node_id, n.kind, n.value, "
            f'coalesce(ik.rank, {STAR_RANK_SQL}), ik.max_count, n."cluster" FROM identity_nodes n '
            'JOIN _guard_clusters g ON g."cluster" = n."cluster" '
            "LEFT JOIN _id_kinds ik ON ik.kind = n.kind WHERE NOT n.blocked"
        )
    ]
    links = [
        Link(int(r[0]), int(r[1]), r[2], r[3])
        for r in wh.fetch(
            "SELECT e.a, e.b, e.source, e.first_seen FROM identity_edges e "
            "JOIN identity_nodes na ON na.node_id = e.a JOIN identity_nodes nb "
            'ON nb.node_id = e.b JOIN _guard_clusters g ON g."cluster" = na."cluster" '
            "WHERE NOT na.blocked AND NOT nb.blocked"
        )
    ]
    drop(wh, "_guard_clusters")
    return nodes, links


def apply_limits(wh: Warehouse) -> dict[str, int]:
    """Set ``part`` for every node of the :data:`TOUCHED` clusters; record refused merges."""
    wh.execute(
        'UPDATE identity_nodes SET part = "cluster" WHERE part <> "cluster" AND '
        f'"cluster" IN (SELECT "cluster" FROM {TOUCHED})'
    )
    wh.execute(
        f'DELETE FROM identity_refusals WHERE "cluster" IN (SELECT "cluster" FROM {TOUCHED})'
    )
    clusters = _violating(wh)
    if not clusters:
        return {"clusters_split": 0, "merges_refused": 0}
    nodes, links = _load(wh, clusters)
    split = replay(nodes, links)
    temp_table(
        wh,
        _PARTS,
        pa.table(
            {
                "node_id": pa.array(list(split.parts), pa.int64()),
                "part": pa.array(list(split.parts.values()), pa.int64()),
            }
        ),
    )
    wh.execute(
        f"UPDATE identity_nodes SET part = p.part FROM {_PARTS.name} p "
        "WHERE identity_nodes.node_id = p.node_id AND identity_nodes.part <> p.part"
    )
    drop(wh, _PARTS.name)
    _record(wh, split, {n.node_id: n for n in nodes})
    return {"clusters_split": len(clusters), "merges_refused": len(split.refused)}


def _record(wh: Warehouse, split: Split, nodes: dict[int, Node]) -> None:
    rows = split.refused
    wh.load(
        IDENTITY_REFUSALS,
        pa.table(
            {
                "a": pa.array([link.a for link, _ in rows], pa.int64()),
                "b": pa.array([link.b for link, _ in rows], pa.int64()),
                "source": [link.source for link, _ in rows],
                "cluster": pa.array([nodes[link.a].cluster for link, _ in rows], pa.int64()),
                "reason": ["limit_exceeded"] * len(rows),
                "detail": [reason for _, reason in rows],
                "decided_at": pa.array([clock.now()] * len(rows), pa.timestamp("us", tz="UTC")),
            }
        ),
        on_conflict="update",
    )
