"""Continuous mode's rest after a busy pass: as long as the pass took (the default), or, with
``YIELD`` set, longer the busier the tracking writer was meanwhile."""

from __future__ import annotations

import pytest

from personify.realtime import continuous
from personify.realtime.continuous import rest_after


def test_by_default_the_rest_is_as_long_as_the_pass() -> None:
    assert continuous.YIELD == 0.0
    assert rest_after(0.8, (100.0, 5.0), (102.0, 5.0)) == pytest.approx(0.8)
    assert rest_after(0.8, (100.0, 5.0), (102.0, 7.0)) == pytest.approx(0.8)


def test_a_saturated_writer_stretches_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(continuous, "YIELD", 2.0)
    assert rest_after(0.8, (100.0, 5.0), (102.0, 5.0)) == pytest.approx(0.8)
    assert rest_after(0.8, (100.0, 5.0), (102.0, 7.0)) == pytest.approx(0.8 * 3)
    assert rest_after(0.8, (100.0, 5.0), (102.0, 6.0)) == pytest.approx(0.8 * 2)
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
    monkeypatch: pytest.MonkeyPatch, before: tuple[float, float], now: tuple[float, float]
) -> None:
    monkeypatch.setattr(continuous, "YIELD", 2.0)
    assert 0.5 <= rest_after(0.5, before, now) <= 0.5 * 3
