"""Continuous mode yields to the tracking writer: the busier the writer was while the last pass
ran, the longer the applier rests (a half of its thread's time when ingest is idle, a quarter
when the writer never rested)."""

from __future__ import annotations

import pytest

from personify.realtime.continuous import YIELD, rest_after


def test_an_idle_writer_leaves_the_rest_as_long_as_the_pass() -> None:
    assert rest_after(0.8, (100.0, 5.0), (102.0, 5.0)) == pytest.approx(0.8)


def test_a_saturated_writer_stretches_the_rest() -> None:
    assert rest_after(0.8, (100.0, 5.0), (102.0, 7.0)) == pytest.approx(0.8 * (1 + YIELD))
    assert rest_after(0.8, (100.0, 5.0), (102.0, 6.0)) == pytest.approx(0.8 * (1 + YIELD / 2))
    # the applier's share of its thread: a half when idle, a quarter when saturated
    took = 1.0
    assert took / (took + rest_after(took, (0.0, 0.0), (1.0, 0.0))) == pytest.approx(0.5)
    assert took / (took + rest_after(took, (0.0, 0.0), (1.0, 1.0))) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("before", "now"),
    [((100.0, 5.0), (100.0, 9.0)), ((100.0, 9.0), (101.0, 5.0)), ((100.0, 0.0), (101.0, 50.0))],
    ids=["no time passed", "counter went back", "more busy than wall time"],
)
def test_odd_samples_stay_within_bounds(
    before: tuple[float, float], now: tuple[float, float]
) -> None:
    assert 0.5 <= rest_after(0.5, before, now) <= 0.5 * (1 + YIELD)
