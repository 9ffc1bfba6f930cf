"""Experiments: assignment is stable and follows the weights; uplift matches a hand computation."""

from __future__ import annotations

from collections import Counter

import pytest

from personify.engagement.experiments import HOLDOUT, assign, uplift


def test_assignment_is_deterministic_and_follows_the_weights() -> None:
    weights = {"A": 1.0, "B": 3.0}
    first = [assign("cart.first", f"c-{i}", weights, holdout=0.1) for i in range(20_000)]
    again = [assign("cart.first", f"c-{i}", dict(weights), holdout=0.1) for i in range(20_000)]
    assert first == again  # stable across runs: a hash, no state
    shares = {k: v / len(first) for k, v in Counter(first).items()}
    assert shares[HOLDOUT] == pytest.approx(0.10, abs=0.01)
    assert shares["A"] == pytest.approx(0.225, abs=0.015)
    assert shares["B"] == pytest.approx(0.675, abs=0.015)
    other = [assign("welcome.first", f"c-{i}", weights, holdout=0.1) for i in range(2_000)]
    assert other != first[:2_000]  # experiments are independent of each other


def test_bad_splits_are_refused() -> None:
    with pytest.raises(ValueError):
        assign("x", "c", {})
    with pytest.raises(ValueError):
        assign("x", "c", {"A": 1}, holdout=1.0)
    with pytest.raises(ValueError):
        assign("x", "c", {"A": 0})


def test_uplift_matches_a_hand_computed_example() -> None:
    # variant 60/500 = 12 %, holdout 40/500 = 8 %: +4 points;
    # se = sqrt(.12·.88/500 + .08·.92/500) = 0.0189315, 1.96·se = 0.0371050
    u = uplift(500, 60, 500, 40)
    assert u.difference == pytest.approx(0.04)
    assert u.low == pytest.approx(0.0028950, abs=1e-6)
    assert u.high == pytest.approx(0.0771050, abs=1e-6)
    assert u.relative == pytest.approx(0.5)
    assert u.conclusive and u.note == "significant at 95 %"


def test_uplift_says_when_the_sample_is_too_small() -> None:
    small = uplift(20, 3, 20, 1)
    assert not small.conclusive and small.note == "sample too small to conclude"
    flat = uplift(1000, 50, 1000, 48)
    assert not flat.conclusive and flat.note == "no significant difference"
    assert uplift(0, 0, 10, 1).note == "no recipients on one side"


def test_guardrail_flags_a_rise_in_unsubscribes() -> None:
    from personify.engagement.experiments import guardrail

    rise = guardrail(1000, 30, 1000, 5)
    assert rise.conclusive and rise.low > 0 and rise.note.startswith("more unsubscribes")
    assert not guardrail(1000, 6, 1000, 5).conclusive  # within the noise
    assert guardrail(1000, 6, 1000, 5).note == "no significant difference"
    small = guardrail(10, 5, 10, 0)  # a big rise, on too few people to say
    assert not small.conclusive and small.note == "sample too small to conclude"
    drop = guardrail(1000, 2, 1000, 30)
    assert drop.conclusive and drop.note.startswith("fewer unsubscribes")
    none = guardrail(1000, 0, 1000, 0)  # nobody unsubscribed on either side
    assert not none.conclusive and none.difference == 0.0
