"""``explain(a, b)``: the chain of evidence linking two identifiers, or why there is none.

An identifier is given as ``kind:value`` (``email:ann@x.org``), as a customer id, or as a bare
value (tried as an email, a phone and an id of any kind, strongest kind first). The answer is
the shortest chain of links between them inside their cluster, each link with its source,
evidence, first input and times; links that over-merge protection refused are marked with the
reason — so "not the same customer" always comes with its cause.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from personify.config import IdentityConfig
from personify.errors import NotFound
from personify.identity.normalize import (
    blind_of,
    graph_value,
    kind_rank,
    normalize_email,
    normalize_id,
    normalize_phone,
)
from personify.warehouse.base import Warehouse

_NODE_COLS = 'node_id, kind, value, blocked, "cluster", part, customer_id, first_seen, last_seen'


@dataclass(frozen=True)
class Ident:
    """One node of the graph, as shown to people."""

    node_id: int
    kind: str
    value: str
    blocked: bool
    cluster: int
    part: int
    customer_id: str | None

    def public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "customer_id": self.customer_id,
            "blocked": self.blocked,
        }


@dataclass
class Explanation:
    """The answer of :func:`explain`."""

    a: Ident
    b: Ident
    linked: bool
    reason: str
    chain: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "a": self.a.public(),
            "b": self.b.public(),
            "linked": self.linked,
            "reason": self.reason,
            "chain": self.chain,
        }


def _ident(row: tuple[Any, ...]) -> Ident:
    return Ident(int(row[0]), row[1], row[2], bool(row[3]), int(row[4]), int(row[5]), row[6])


def find_node(wh: Warehouse, text: str, config: IdentityConfig) -> Ident:
    """The node ``text`` names (see the module doc). Raises :class:`NotFound`."""
    kind, sep, rest = text.partition(":")
    if sep and not kind.startswith("+"):
        rows = wh.fetch(f"SELECT {_NODE_COLS} FROM identity_nodes WHERE kind = ?", [kind])[:1]
        if rows:
            value = {
                "email": normalize_email(rest, config.email),
                "phone": normalize_phone(rest, config.phone_region),
            }.get(kind, normalize_id(rest))
            if value is not None:  # blind under encrypted fields
                value = graph_value(wh, kind, value)
            found = wh.fetch(
                f"SELECT {_NODE_COLS} FROM identity_nodes WHERE kind = ? AND value = ?",
                [kind, value],
            )
            if found:
                return _ident(found[0])
    merged = wh.fetch(
        "SELECT coalesce(merged_into, customer_id) FROM customer_ids WHERE customer_id = ?", [text]
    )
    if merged:
        rows = wh.fetch(
            f"SELECT {_NODE_COLS} FROM identity_nodes n WHERE customer_id = ? ORDER BY "
            "first_seen, kind, value LIMIT 1",
            [merged[0][0]],
        )
        if rows:
            return _ident(rows[0])
    email, phone = normalize_email(text, config.email), normalize_phone(text, config.phone_region)
    candidates = {
        graph_value(wh, "email", email) if email else None,
        graph_value(wh, "phone", phone) if phone else None,
        normalize_id(text),
    } - {None}
    rows = (
        wh.fetch(
            f"SELECT {_NODE_COLS} FROM identity_nodes WHERE value IN "
            f"({', '.join('?' for _ in candidates)})",
            sorted(c for c in candidates if c),
        )
        if candidates
        else []
    )
    if not rows:
        raise NotFound(
            f"no identifier matches {text!r}",
            hint="use kind:value (e.g. email:ann@example.org) or a customer id",
        )
    rows.sort(key=lambda r: (kind_rank(r[1], config), r[1], r[2]))
    return _ident(rows[0])


def _links(wh: Warehouse, cluster: int) -> list[tuple[Any, ...]]:
    return wh.fetch(
        "SELECT e.a, e.b, e.source, e.evidence, e.origin, e.first_seen, e.last_seen, "
        "r.detail FROM identity_edges e JOIN identity_nodes na ON na.node_id = e.a "
        "JOIN identity_nodes nb ON nb.node_id = e.b LEFT JOIN identity_refusals r "
        'ON r.a = e.a AND r.b = e.b AND r.source = e.source WHERE na."cluster" = ? '
        "AND NOT na.blocked AND NOT nb.blocked ORDER BY e.first_seen, e.a, e.b, e.source",
        [cluster],
    )


def _path(links: list[tuple[Any, ...]], start: int, goal: int) -> list[tuple[Any, ...]]:
    """Shortest chain of links from ``start`` to ``goal`` (breadth first, oldest links first)."""
    adjacent: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
    for link in links:
        adjacent.setdefault(link[0], []).append((link[1], link))
        adjacent.setdefault(link[1], []).append((link[0], link))
    came: dict[int, tuple[int, tuple[Any, ...]] | None] = {start: None}
    queue = deque([start])
    while queue and goal not in came:
        node = queue.popleft()
        for nxt, link in adjacent.get(node, []):
            if nxt not in came:
                came[nxt] = (node, link)
                queue.append(nxt)
    chain: list[tuple[Any, ...]] = []
    node = goal
    while came.get(node) is not None:
        prev, link = came[node]  # type: ignore[misc]
        chain.append(link)
        node = prev
    return list(reversed(chain))


def _describe(wh: Warehouse, chain: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    ids = sorted({x for link in chain for x in link[:2]})
    names = (
        {
            int(r[0]): {"kind": r[1], "value": r[2]}
            for r in wh.fetch(
                "SELECT node_id, kind, value FROM identity_nodes WHERE node_id IN "
                f"({', '.join('?' for _ in ids)})",
                ids,
            )
        }
        if ids
        else {}
    )
    return [
        {
            "from": names[link[0]],
            "to": names[link[1]],
            "source": link[2],
            "evidence": link[3],
            "origin": link[4],
            "first_seen": link[5],
            "last_seen": link[6],
            "refused": link[7],
        }
        for link in chain
    ]


def explain(wh: Warehouse, a: str, b: str, config: IdentityConfig) -> Explanation:
    """Why ``a`` and ``b`` are, or are not, the same customer."""
    found = _explain(wh, a, b, config)
    if blind_of(wh) is None:
        return found
    # encrypted fields: the graph's emails/phones are blind; show the addresses they stand for
    from personify.privacy.fields import plain_identifiers

    ids = [c for c in {found.a.customer_id, found.b.customer_id} if c]
    plain = plain_identifiers(wh, ids)

    def shown(n: Ident) -> Ident:
        return replace(n, value=plain.get((n.kind, n.value), n.value))

    for link in found.chain:
        for end in ("from", "to"):
            pair = (link[end]["kind"], link[end]["value"])
            link[end] = {**link[end], "value": plain.get(pair, pair[1])}
    return replace(found, a=shown(found.a), b=shown(found.b))


def _explain(wh: Warehouse, a: str, b: str, config: IdentityConfig) -> Explanation:
    na, nb = find_node(wh, a, config), find_node(wh, b, config)
    for n in (na, nb):
        if n.blocked:
            return Explanation(
                na,
                nb,
                False,
                f"{n.kind} {n.value!r} is a blocked value: it links nothing (identity.blocked)",
            )
    if na.cluster != nb.cluster:
        return Explanation(
            na,
            nb,
            False,
            "no evidence links them: no record, event or order holds identifiers of both",
        )
    chain = _describe(wh, _path(_links(wh, na.cluster), na.node_id, nb.node_id))
    if na.part == nb.part:
        linked = na.customer_id is not None
        reason = (
            "linked" if linked else "linked, but only by anonymous identifiers: no customer yet"
        )
        return Explanation(na, nb, linked, reason, chain)
    refused = [c["refused"] for c in chain if c["refused"]]
    why = refused[0] if refused else "a merge on another path was refused by a limit"
    return Explanation(
        na, nb, False, f"evidence links them but the merge was refused: {why}", chain
    )
