"""Over-merge protection replays a cluster's links in a fixed order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from personify.identity.guard import Link, Node, replay

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
