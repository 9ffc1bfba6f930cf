"""Survivorship: every rule is a total order, so the winner never depends on arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from personify.config import FieldRule
from personify.profiles.survivorship import Observation, rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)

observations = st.lists(
    st.builds(
        Observation,
        value=st.sampled_from(["ann", "anne", "Ann", "a"]),
        source=st.sampled_from(["crm", "shop", "web"]),
        observed_at=st.integers(0, 5).map(lambda d: T0 + timedelta(days=d)),
    ),
    min_size=1,
    max_size=12,
)
rules = st.sampled_from(
    [
        FieldRule(),
        FieldRule(rule="first_non_empty"),
        FieldRule(rule="most_frequent"),
        FieldRule(rule="source_priority", sources=("shop", "crm")),
    ]
)


@settings(max_examples=200, deadline=None)
@given(observations, rules, st.randoms())
def test_order_independent(obs: list[Observation], rule: FieldRule, rnd: object) -> None:
    shuffled = obs[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert rank(obs, rule)[0] == rank(shuffled, rule)[0]


def test_rules() -> None:
    obs = [
        Observation("old", "crm", T0),
        Observation("new", "web", T0 + timedelta(days=2)),
        Observation("mid", "shop", T0 + timedelta(days=1)),
        Observation("mid", "web", T0),
    ]
    assert rank(obs, FieldRule())[0].value == "new"
    assert rank(obs, FieldRule(rule="first_non_empty"))[0].value == "mid"  # tie at T0: smaller
    assert rank(obs, FieldRule(rule="most_frequent"))[0].value == "mid"
    assert rank(obs, FieldRule(rule="source_priority", sources=("crm",)))[0].value == "old"
