"""The recent-id cache: compact, oldest forgotten first, and never answers for another event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from personify.ingest.tracking.limits import RecentIds

_ids = st.text(min_size=1, max_size=12)
_digests = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(
    stored=st.lists(st.tuples(_ids, _digests), max_size=60),
    asked=st.lists(st.tuples(_ids, _digests), max_size=30),
    capacity=st.integers(min_value=1, max_value=40),
)
def test_a_duplicate_is_only_ever_what_was_stored(
    stored: list[tuple[str, int]], asked: list[tuple[str, int]], capacity: int
) -> None:
    """Memory says "duplicate" only for an (id, payload hash) pair that was added (even when the
    same id comes again with another hash, which the store never adds), and it remembers at
    least the ``capacity`` latest ids added (one request at a time), each with its latest hash
    (ids are unique in the store: checked where they are)."""
    recent = RecentIds(capacity=capacity)
    for start in range(0, len(stored), 7):
        recent.add(stored[start : start + 7])
    added = set(stored)
    questions = asked + stored
    answers = recent.duplicates([m for m, _ in questions], [d for _, d in questions])
    for pair, duplicate in zip(questions, answers, strict=True):
        if duplicate:
            assert pair in added
    if len({m for m, _ in stored}) < len(stored):
        return
    latest: dict[str, int] = {}
    for message_id, digest in reversed(stored):
        latest.setdefault(message_id, digest)
        if len(latest) == capacity:
            break
    pairs = list(latest.items())
    assert all(recent.duplicates([m for m, _ in pairs], [d for _, d in pairs]))


def test_preloaded_ids_rank_older_than_ids_added_meanwhile() -> None:
    recent = RecentIds(capacity=8)  # generations of 2
    recent.add([("live", 1)])
    recent.preload([(f"old-{i}", i) for i in range(20)] + [("no-hash", None)])
    assert recent.duplicates(["live", "old-19", "old-18"], [1, 19, 18]) == [True] * 3
    assert not recent.lookup("old-0")[0]  # forgotten first
    assert not recent.lookup("no-hash")[0]  # stored without a hash: the store decides
    assert 8 <= len(recent) <= 10
    for i in range(40):  # new ids push the preloaded ones out
        recent.add([(f"new-{i}", i)])
    assert not recent.duplicates(["old-19"], [19])[0]
    assert recent.duplicates(["new-39", "new-32"], [39, 32]) == [True, True]
    recent.clear()
    assert len(recent) == 0 and not recent.duplicates(["new-39"], [39])[0]


@settings(max_examples=150, deadline=None)
@given(
    stored=st.lists(st.tuples(_ids, _digests), max_size=60, unique_by=lambda p: p[0]),
    capacity=st.integers(min_value=1, max_value=40),
)
def test_the_latest_ids_are_remembered(stored: list[tuple[str, int]], capacity: int) -> None:
    recent = RecentIds(capacity=capacity)
    for start in range(0, len(stored), 7):
        recent.add(stored[start : start + 7])
    latest = stored[-capacity:]
    assert all(recent.duplicates([m for m, _ in latest], [d for _, d in latest]))


def test_the_newest_hash_of_an_id_wins() -> None:
    recent = RecentIds(capacity=2)  # generations of 1
    recent.add([("0", 0)])
    recent.add([("0", 1)])  # (the store never adds a second payload; memory copes all the same)
    assert recent.duplicates(["0", "0"], [1, 0]) == [True, False]


def test_a_known_id_with_another_payload_is_left_to_the_store() -> None:
    recent = RecentIds(capacity=4)
    recent.add([("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)])  # a generation frozen
    assert recent.duplicates(["a", "a", "e", "e"], [1, 9, 5, 9]) == [True, False, True, False]
