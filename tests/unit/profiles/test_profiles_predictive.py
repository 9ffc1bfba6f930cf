"""Predictive traits' models: the published formulas by hand, and parameters recovered from
data simulated from the BG/NBD and Gamma-Gamma processes."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("scipy")

from personify.config import PredictiveTraits  # noqa: E402
from personify.profiles.predictive import (  # noqa: E402
    BGNBD,
    GammaGamma,
    bgnbd_loglik,
    expected_purchases,
    expected_spend,
    fit,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    predict,
)

# Fader, Hardie & Lee (2005), CDNOW, time in weeks
CDNOW = BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)


def _hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss's series, summed by hand (|z| < 1)."""
    total, term, k = 1.0, 1.0, 0
    while abs(term) > 1e-16 * abs(total):
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        k += 1
    return total


def _by_hand(p: BGNBD, x: int, t_x: float, big_t: float, t: float) -> tuple[float, float]:
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    odds = a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    alive = 1 / (1 + odds)
    head = (a + b + x - 1) / (a - 1)
    z = t / (alpha + big_t + t)
    tail = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * _hyp2f1(
        r + x, b + x, a + b + x - 1, z
    )
    return alive, head * tail / (1 + odds)


@pytest.mark.parametrize(
    "x,t_x,big_t", [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 35.0, 38.86), (1, 2.0, 70.0)]
)
def test_p_alive_and_expected_purchases_match_the_published_formulas(
    x: int, t_x: float, big_t: float
) -> None:
    alive, expected = _by_hand(CDNOW, x, t_x, big_t, 39.0)
    arr = (np.array([x]), np.array([t_x]), np.array([big_t]))
    assert p_alive(CDNOW, *arr)[0] == pytest.approx(alive, rel=1e-9)
    assert expected_purchases(CDNOW, 39.0, *arr)[0] == pytest.approx(expected, rel=1e-9)


def test_the_published_example() -> None:
    # FHL 2005 §5: a customer with x=2, t_x=30.43, T=38.86 is expected to make 1.226 purchases
    # in the next 39 weeks
    got = expected_purchases(CDNOW, 39.0, np.array([2]), np.array([30.43]), np.array([38.86]))
    assert got[0] == pytest.approx(1.226, abs=0.001)


def test_log_likelihood_by_hand() -> None:
    r, alpha, a, b = CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b
    x, t_x, big_t = 3, 20.0, 30.0
    beta = math.lgamma
    a1 = beta(r + x) - beta(r) + r * math.log(alpha)
    a2 = beta(a + b) + beta(b + x) - beta(b) - beta(a + b + x)
    lik = math.exp(a1 + a2) * (
        (alpha + big_t) ** -(r + x) + a / (b + x - 1) * (alpha + t_x) ** -(r + x)
    )
    got = bgnbd_loglik(CDNOW, np.array([x]), np.array([t_x]), np.array([big_t]))[0]
    assert got == pytest.approx(math.log(lik), rel=1e-10)
    # no repeat purchase: only the first term
    got0 = bgnbd_loglik(CDNOW, np.array([0]), np.array([0.0]), np.array([big_t]))[0]
    assert got0 == pytest.approx(r * math.log(alpha / (alpha + big_t)), rel=1e-10)


def test_expected_spend_by_hand() -> None:
    gg = GammaGamma(p=6.25, q=3.74, gamma=15.44)  # FHL's CDNOW spend model
    got = expected_spend(gg, np.array([2, 0]), np.array([35.0, np.nan]))
    assert got[0] == pytest.approx((15.44 + 35.0 * 2) * 6.25 / (6.25 * 2 + 3.74 - 1))
    assert got[1] == pytest.approx(6.25 * 15.44 / 2.74)


def simulate(
    true: BGNBD, n: int, seed: int, days: int = 365
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-day (x, t_x, T) of ``n`` customers from the BG/NBD process, first purchases spread
    over the period."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(true.r, 1 / true.alpha, n)
    p = rng.beta(true.a, true.b, n)
    big_t = rng.integers(30, days, n).astype(float)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > big_t[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, big_t


def test_recovers_bgnbd_parameters_from_simulated_data() -> None:
    true = BGNBD(r=0.6, alpha=25.0, a=0.8, b=3.0)
    x, t_x, big_t = simulate(true, 20_000, seed=7)
    got, quality = fit_bgnbd(x, t_x, big_t)
    assert quality["converged"]
    assert got.r == pytest.approx(true.r, rel=0.1)
    assert got.alpha == pytest.approx(true.alpha, rel=0.15)
    assert got.a == pytest.approx(true.a, rel=0.25)
    assert got.b == pytest.approx(true.b, rel=0.3)
    # its log-likelihood in days: that of the fitted parameters on the data as given
    ll = float(np.sum(bgnbd_loglik(got, x, t_x, big_t)))
    assert quality["log_likelihood"] == pytest.approx(ll, rel=1e-6)
    # the true parameters are no better
    assert ll >= float(np.sum(bgnbd_loglik(true, x, t_x, big_t))) - 1e-6


def test_recovers_gamma_gamma_parameters() -> None:
    rng = np.random.default_rng(3)
    p, q, gamma = 6.0, 4.0, 15.0
    n = 20_000
    x = rng.integers(1, 8, n).astype(float)
    nu = rng.gamma(q, 1 / gamma, n)
    m = np.array([rng.gamma(p, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    got, quality = fit_gamma_gamma(x, m)
    assert quality["customers"] == n
    assert got.p == pytest.approx(p, rel=0.15)
    assert got.q == pytest.approx(q, rel=0.15)
    assert got.gamma == pytest.approx(gamma, rel=0.2)


def _summary(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray, m: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"c{i}" for i in range(len(x))],
            "frequency": x.astype(np.int64),
            "recency": t_x.astype(np.int64),
            "age": big_t.astype(np.int64),
            "repeat_value": pa.array(m, mask=~np.isfinite(m)),
        }
    )


def test_fit_is_deterministic_and_refuses_too_little_data() -> None:
    true = BGNBD(r=0.6, alpha=25.0, a=0.8, b=3.0)
    x, t_x, big_t = simulate(true, 3_000, seed=11)
    t_x = np.floor(t_x)
    m = np.where(x > 0, 20.0 + x, np.nan)
    table = _summary(x, t_x, big_t, m)
    config = PredictiveTraits(enabled=True, min_customers=100, min_repeat_customers=10)
    one, two = fit(table, config), fit(table, config)
    assert one.status == "fitted" and one.bgnbd == two.bgnbd and one.gamma_gamma == two.gamma_gamma
    assert predict(table, one).equals(predict(table, two))
    few = fit(table.slice(0, 5), config)
    assert few.status == "skipped" and few.bgnbd is None
    assert "fewer than traits.predictive.min_customers (100)" in (few.note or "")
    none_repeat = fit(_summary(x * 0, t_x * 0, big_t, m * np.nan), config)
    assert none_repeat.status == "skipped"
    assert "min_repeat_customers" in (none_repeat.note or "")


_ORDER_DATA = simulate(BGNBD(r=0.6, alpha=25.0, a=0.8, b=3.0), 1_500, seed=21)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_fit_does_not_depend_on_the_rows_order(seed: int) -> None:
    x, t_x, big_t = (np.floor(c) for c in _ORDER_DATA)
    m = np.where(x > 0, 10.0 + (x * 7) % 13, np.nan)
    order = np.random.default_rng(seed).permutation(len(x))
    base = fit_bgnbd(x, t_x, big_t)[0], fit_gamma_gamma(x, m)[0]
    shuffled = (
        fit_bgnbd(x[order], t_x[order], big_t[order])[0],
        fit_gamma_gamma(x[order], m[order])[0],
    )
    assert shuffled == base  # exactly: the same data gives the same values


def test_without_scipy_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from personify.errors import ConfigError
    from personify.profiles import predictive

    for name in ("scipy", "scipy.optimize", "scipy.special"):
        monkeypatch.setitem(__import__("sys").modules, name, None)  # "not installed"
    with pytest.raises(ConfigError) as e:
        predictive.fit_bgnbd(np.array([1.0]), np.array([1.0]), np.array([2.0]))
    assert e.value.key == "traits.predictive.enabled"
    assert "personify[predictive]" in (e.value.hint or "")


def test_the_holdout_chart_has_a_point_per_group_and_series_at_its_value() -> None:
    import re

    from personify.profiles.predictive_report import Holdout, HoldoutRow, holdout_chart

    rows = (HoldoutRow("0", 40, 0.5, 0.25), HoldoutRow("1", 9, 1.0, 0.0), HoldoutRow("7+", 2, 2, 4))
    svg = holdout_chart(Holdout("2026-01-01T00:00:00+00:00", 60, "fitted", None, rows))
    for series in ("predicted", "actual"):
        found = re.findall(
            rf'<circle class="point {series}" data-frequency="([^"]+)" data-value="([^"]+)" '
            r'cx="[^"]+" cy="([^"]+)"',
            svg,
        )
        assert [(f, float(v)) for f, v, _ in found] == [
            (r.frequency, float(getattr(r, series))) for r in rows
        ]
    heights = {
        float(v): float(cy)
        for v, cy in re.findall(r'data-value="([^"]+)" cx="[^"]+" cy="([^"]+)"', svg)
    }
    # the y axis runs from 0 (the baseline) to the largest value (the top): higher is smaller
    assert heights[0.0] > heights[0.25] > heights[0.5] > heights[1.0] > heights[2.0] > heights[4.0]
