"""Over-merge protection replays a cluster's links in a fixed order."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from personify.identity.guard import Link, Node, Split, replay

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _shared_device() -> tuple[list[Node], list[Link]]:
    nodes = [
        Node(1, "anonymous_id", "device", 4, None),
        Node(2, "user_id", "alice", 0, 1),
        Node(3, "user_id", "bob", 0, 1),
        Node(4, "email", "bob@x.org", 1, None),
    ]
    links = [
        Link(1, 2, "web", T0),
        Link(1, 3, "web", T0 + timedelta(days=1)),
        Link(3, 4, "crm", T0 + timedelta(days=2)),
    ]
    return nodes, links


def test_shared_device_goes_with_the_first_account() -> None:
    nodes, links = _shared_device()
    split = replay(nodes, links)
    assert split.parts[1] == split.parts[2]
    assert split.parts[3] == split.parts[4] != split.parts[1]
    assert len(split.refused) == 1
    link, reason = split.refused[0]
    assert (link.a, link.b) == (1, 3)
    assert "2 user_id identifiers (limit 1)" in reason


def test_replay_ignores_arrival_order() -> None:
    nodes, links = _shared_device()
    first = replay(nodes, links)
    for seed in range(20):
        shuffled = links[:]
        random.Random(seed).shuffle(shuffled)
        again = replay(list(reversed(nodes)), shuffled)
        assert again.parts == first.parts
        assert [(x.a, x.b) for x, _ in again.refused] == [(x.a, x.b) for x, _ in first.refused]


def _reference(nodes: list[Node], links: list[Link]) -> Split:
    """The replay as first written (dicts of Counters, a sort key per link): the oracle of the
    array-based :func:`replay`."""
    by_id = {n.node_id: n for n in nodes}
    parent = {n.node_id: n.node_id for n in nodes}
    counts = {n.node_id: Counter({n.kind: 1}) for n in nodes if n.limit is not None}

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    def order(link: Link) -> tuple[object, ...]:
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
            reason = f"the customer would hold {merged[kind]} {kind} identifiers "
            split.refused.append((link, reason + f"(limit {limits[kind]})"))
            continue
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        if merged:
            counts[keep] = merged
        counts.pop(gone, None)
    split.parts = {n: find(n) for n in parent}
    return split


_KINDS = {"user_id": (0, 1), "email": (1, 2), "phone": (2, None), "anonymous_id": (4, None)}


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Node], list[Link]]:
    n = draw(st.integers(2, 24))
    kinds = draw(st.lists(st.sampled_from(sorted(_KINDS)), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    emails = draw(st.sampled_from([2, None]))  # None: one limited kind (the default config)
    limits = {k: (rank, emails if k == "email" else most) for k, (rank, most) in _KINDS.items()}
    nodes = [
        Node(i, k, draw(st.sampled_from(["a", "b", "é", "Z"])) + str(i), *limits[k])
        for i, k in zip(ids, kinds, strict=True)
    ]
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(ids), st.sampled_from(ids), st.sampled_from(["web", "crm"])),
            max_size=60,
        )
    )
    links = [
        Link(a, b, source, T0 + timedelta(days=draw(st.integers(0, 3))))
        for a, b, source in {(min(a, b), max(a, b), s) for a, b, s in pairs if a != b}
    ]
    return nodes, links


@given(clusters())
@settings(max_examples=300, deadline=None)
def test_replay_equals_the_reference(cluster: tuple[list[Node], list[Link]]) -> None:
    nodes, links = cluster
    got, want = replay(nodes, links), _reference(nodes, links)
    assert got.parts == want.parts
    assert [(x, why) for x, why in got.refused] == [(x, why) for x, why in want.refused]
