"""Predictive traits: ``p_alive``, ``expected_orders`` and ``predicted_clv`` (opt-in).

The buy-till-you-die models, fit per project on the orders the warehouse holds:

* BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
  customer buys at a Poisson rate λ ~ Gamma(r, α); after each purchase she drops out with
  probability p ~ Beta(a, b);
* Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): the mean spend of her repeat purchases
  ~ Gamma(p, ν), ν ~ Gamma(q, γ), independent of the purchase process.

One aggregate over ``orders`` in the warehouse (:func:`summary_sql`) gives per customer, in whole
UTC days relative to ``--now``: ``frequency`` x (purchase days after the first), ``recency`` t_x
(first to last purchase day), ``age`` T (first purchase day to now) and the mean spend of the
repeat purchase days. The parameters are fit in Python by maximum likelihood on that summary
(identical rows weighted once: a million customers hold a few hundred thousand distinct (x, t_x,
T)), then the predictions are written back into ``customers`` through an Arrow temp table —
after the profile build's commit, with no lock held during the fit (:func:`refresh`).
Customers with no order keep NULL (the model is about customers who bought). Too few customers
(``traits.predictive.min_customers``), or too few repeat buyers: no fit, the columns stay NULL
and the fit's row in ``predictive_fits`` says why. The holdout check and its page are in
:mod:`personify.profiles.predictive_report`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from personify import clock
from personify.config import PredictiveTraits, Project
from personify.errors import ConfigError
from personify.identity.tables import WRITES
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop, scratch, temp_table

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RESULTS = scratch(
    "_predictive",
    customer_id="VARCHAR",
    p_alive="DOUBLE",
    expected_orders="DOUBLE",
    predicted_clv="DOUBLE",
)
INSTALL_HINT = "pip install 'personify[predictive]' (scipy), or turn traits.predictive.enabled off"


def _scipy() -> Any:
    try:
        import scipy.optimize
        import scipy.special
    except ImportError:
        raise ConfigError(
            "traits.predictive needs scipy, which is not installed",
            key="traits.predictive.enabled",
            hint=INSTALL_HINT,
        ) from None
    return scipy


# ------------------------------------------------------------------------------- summary (SQL)
def now_day(now: datetime) -> int:
    """The UTC day number (days since 1970-01-01) of ``now``."""
    return (now - EPOCH) // timedelta(days=1)


def summary_sql(
    excluded_statuses: tuple[str, ...], scope: str, now: datetime, dialect: str | None
) -> tuple[str, list[object]]:
    """SQL: ``customer_id, frequency, recency, age, repeat_value`` per customer with an order
    (not of an excluded status) no later than ``now``, restricted to ``scope`` (a condition on
    ``{c}``). A day's orders are one purchase (their totals summed); ``repeat_value`` is the mean
    of the days after the first (NULL when there are none)."""
    if dialect == "duckdb":
        day = "CAST(floor(epoch_us(o.created_at) / 86400000000.0) AS BIGINT)"
    else:
        day = "CAST(floor(epoch(o.created_at) / 86400) AS BIGINT)"
    statuses = tuple(s.lower() for s in excluded_statuses)
    excluded = f"lower(o.status) IN ({', '.join('?' for _ in statuses)})" if statuses else "FALSE"
    sql = (
        "SELECT customer_id, count(*) - 1 AS frequency, max(day) - min(day) AS recency, "
        "? - min(day) AS age, CAST(sum(spent) FILTER (WHERE n > 1) AS DOUBLE) / "
        "nullif(count(*) - 1, 0) AS repeat_value FROM ("
        "SELECT customer_id, day, spent, row_number() OVER (PARTITION BY customer_id "
        "ORDER BY day) AS n FROM ("
        f"SELECT o.customer_id, {day} AS day, sum(CAST(coalesce(o.total, 0) AS DOUBLE)) AS spent "
        f"FROM orders o WHERE o.customer_id IS NOT NULL AND ({scope.format(c='o.customer_id')}) "
        f"AND (o.status IS NULL OR NOT ({excluded})) AND o.created_at <= CAST(? AS TIMESTAMPTZ) "
        "GROUP BY 1, 2) d) r GROUP BY customer_id"
    )
    return sql, [now_day(now), *statuses, now]


def read_summary(
    wh: Warehouse, project: Project, scope: str = "TRUE", now: datetime | None = None
) -> pa.Table:
    now = clock.now() if now is None else now
    sql, params = summary_sql(project.config.traits.excluded_order_statuses, scope, now, wh.dialect)
    return wh.fetch_arrow(sql, params)


# ----------------------------------------------------------------------------------- the models
@dataclass(frozen=True)
class BGNBD:
    """BG/NBD parameters, time in days."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float

    def mean(self) -> float:
        """The population's mean spend per purchase (``q > 1``)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else math.nan


def bgnbd_loglik(
    params: BGNBD | np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    gammaln = _scipy().special.gammaln
    if isinstance(params, BGNBD):
        r, alpha, a, b = params.r, params.alpha, params.a, params.b
    else:
        r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4))


def gg_loglik(params: GammaGamma | np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Each customer's Gamma-Gamma log-likelihood of her mean spend ``m`` over ``x`` purchases
    (the density of the mean, as in Fader, Hardie & Lee's note)."""
    gammaln = _scipy().special.gammaln
    if isinstance(params, GammaGamma):
        p, q, g = params.p, params.q, params.gamma
    else:
        p, q, g = params
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + g)
    )


def _fit(
    nll: Any, start: np.ndarray, bounds: tuple[float, float] = (-12.0, 12.0)
) -> tuple[np.ndarray, Any]:
    """Minimize ``nll`` (the value and its gradient) over the log of the parameters (they are
    positive)."""
    optimize = _scipy().optimize
    result = optimize.minimize(
        nll,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[bounds] * len(start),
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
    if not result.success:  # one more, from where it stopped, with a derivative-free search
        again = optimize.minimize(
            lambda v: nll(v)[0],
            result.x,
            method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-12},
        )
        if again.fun <= result.fun:
            again.nit = result.nit + again.nit
            result = again
    return np.exp(result.x), result


def _weighted(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of ``columns`` (sorted: the fit does not depend on the rows' order)
    and how many times each occurs. Whole non-negative numbers (days, counts) are packed in
    one integer key first: a million rows in a fraction of a second."""
    ints = all(
        c.size == 0 or (np.all(c == np.floor(c)) and c.min() >= 0 and c.max() < 2**20)
        for c in columns
    )
    if ints and len(columns) <= 3:
        key = np.zeros(columns[0].shape, dtype=np.int64)
        for c in columns:
            key = (key << 20) | c.astype(np.int64)
        uniq, counts = np.unique(key, return_counts=True)
        rows = []
        for i in range(len(columns)):
            shift = 20 * (len(columns) - 1 - i)
            rows.append(((uniq >> shift) & (2**20 - 1)).astype(np.float64))
        return rows, counts.astype(np.float64)
    stacked = np.stack(columns, axis=1)
    out, counts = np.unique(stacked, axis=0, return_counts=True)
    return [out[:, i] for i in range(out.shape[1])], counts.astype(np.float64)


def _bgnbd_nll(w: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> Any:
    """The mean negative log-likelihood of weighted rows and its gradient in log-parameters.
    What depends on ``x`` alone (the gamma functions) is summed per distinct ``x``, and the
    logarithms of ``alpha + T`` and ``alpha + t_x`` are taken per distinct day: the work per
    row is a handful of array operations."""
    special = _scipy().special
    gammaln, digamma = special.gammaln, special.digamma
    xs, at = np.unique(x, return_inverse=True)
    ts, at_t = np.unique(big_t, return_inverse=True)
    txs, at_tx = np.unique(t_x, return_inverse=True)
    w_x = np.bincount(at, weights=w, minlength=len(xs))  # weight per distinct x
    total = float(w.sum())
    repeat = x > 0
    rows_x = x  # r + x per row: added to r each call
    b_rows = np.where(xs > 0, xs - 1, 0.0)  # b + x - 1 per distinct x, less b

    def nll(logp: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(logp)
        per_x = gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs)
        a12 = float(np.dot(w_x, per_x)) + total * (
            -gammaln(r) + r * math.log(alpha) + gammaln(a + b) - gammaln(b)
        )
        log_t, log_tx = np.log(alpha + ts)[at_t], np.log(alpha + txs)[at_tx]
        rx = r + rows_x
        a3 = -rx * log_t
        with np.errstate(divide="ignore"):
            log_odds = (math.log(a) - np.log(b + b_rows))[at]
            a4 = np.where(repeat, log_odds - rx * log_tx, -np.inf)
        lse = np.logaddexp(a3, a4)
        value = -(a12 + float(np.dot(w, lse))) / total
        w3 = w * np.exp(a3 - lse)  # each row's weight × the first term's share
        w4 = np.where(repeat, w - w3, 0.0)  # × the second's
        d_r = (
            float(np.dot(w_x, digamma(r + xs)))
            + total * (math.log(alpha) - digamma(r))
            - float(np.dot(w3, log_t))
            - float(np.dot(w4, log_tx))
        )
        d_alpha = (
            total * r / alpha
            - float(np.dot(w3 * rx, (1 / (alpha + ts))[at_t]))
            - float(np.dot(w4 * rx, (1 / (alpha + txs))[at_tx]))
        )
        w4_x = np.bincount(at, weights=w4, minlength=len(xs))
        d_ab = total * digamma(a + b) - float(np.dot(w_x, digamma(a + b + xs)))
        d_a = d_ab + float(w4_x.sum()) / a
        with np.errstate(divide="ignore", invalid="ignore"):
            to_b = np.where(xs > 0, w4_x / (b + b_rows), 0.0)
        d_b = d_ab + float(np.dot(w_x, digamma(b + xs))) - total * digamma(b) - float(to_b.sum())
        grad = -np.array([d_r, d_alpha, d_a, d_b]) / total * (r, alpha, a, b)  # d/d log θ
        if not math.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros(4)
        return value, grad

    return nll


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> tuple[BGNBD, dict[str, Any]]:
    """Maximum-likelihood BG/NBD parameters (time in the unit of ``t_x`` / ``T``)."""
    (ux, utx, ut), w = _weighted(
        x.astype(np.float64), t_x.astype(np.float64), big_t.astype(np.float64)
    )
    total = float(w.sum())
    scale = max(float(np.dot(w, ut)) / total, 1.0)  # fit in a unit where T ≈ 1: conditioned
    (r, alpha, a, b), result = _fit(_bgnbd_nll(w, ux, utx / scale, ut / scale), np.zeros(4))
    # the log-likelihood in days: the scaled one less Σ x·log(scale)
    ll = float(-result.fun * total - float(np.dot(w, ux)) * math.log(scale))
    return BGNBD(float(r), float(alpha * scale), float(a), float(b)), {
        "log_likelihood": ll,
        "converged": bool(result.success),
        "iterations": int(result.nit),
        "distinct_rows": len(w),
    }


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> tuple[GammaGamma, dict[str, Any]]:
    """Maximum-likelihood Gamma-Gamma parameters on customers with ``x ≥ 1`` and ``m > 0``."""
    special = _scipy().special
    gammaln, digamma = special.gammaln, special.digamma
    keep = (x >= 1) & (m > 0) & np.isfinite(m)
    (ux, um), w = _weighted(x[keep].astype(np.float64), m[keep].astype(np.float64))
    total = float(w.sum())
    scale = max(float(np.dot(w, um) / total), 1e-9) if total else 1.0
    sm = um / scale
    xs, at = np.unique(ux, return_inverse=True)
    log_m, log_x = np.log(sm), np.log(ux)
    xm = ux * sm

    def nll(logp: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, g = np.exp(logp)
        px = p * ux
        log_xmg = np.log(xm + g)
        ll = (
            (gammaln(p * xs + q) - gammaln(p * xs))[at]
            - gammaln(q)
            + q * np.log(g)
            + (px - 1) * log_m
            + px * log_x
            - (px + q) * log_xmg
        )
        value = -float(np.dot(w, ll)) / total
        psi_pq = digamma(p * xs + q)[at]
        d_p = ux * (psi_pq - digamma(p * xs)[at] + log_m + log_x - log_xmg)
        d_q = psi_pq - digamma(q) + np.log(g) - log_xmg
        d_g = q / g - (px + q) / (xm + g)
        grad = -np.array([np.dot(w, d) for d in (d_p, d_q, d_g)]) / total * (p, q, g)
        if not math.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros(3)
        return value, grad

    (p, q, g), result = _fit(nll, np.array([0.0, 1.0, 0.0]))
    ll = float(-result.fun * total - total * math.log(scale))
    return GammaGamma(float(p), float(q), float(g * scale)), {
        "log_likelihood": ll,
        "converged": bool(result.success),
        "iterations": int(result.nit),
        "customers": int(total),
    }


def p_alive(params: BGNBD, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """P(alive | x, t_x, T) (FHL 2005, eq. 11): 1 for a customer without a repeat purchase."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = x.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = (
            np.log(a)
            - np.log(np.maximum(b + x - 1, 1e-300))
            + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
        )
    out = 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0)))
    return np.where(x > 0, out, 1.0)


def expected_purchases(
    params: BGNBD, horizon: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """E[Y(t) | x, t_x, T], the purchases in the next ``horizon`` (FHL 2005, eq. 10)."""
    hyp2f1 = _scipy().special.hyp2f1
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = x.astype(np.float64)
    t = float(horizon)
    head = (a + b + x - 1) / (a - 1)
    z = t / (alpha + big_t + t)
    tail = 1 - np.exp((r + x) * np.log((alpha + big_t) / (alpha + big_t + t))) * hyp2f1(
        r + x, b + x, a + b + x - 1, z
    )
    alive_odds = np.where(
        x > 0,
        a
        / np.maximum(b + x - 1, 1e-300)
        * np.exp(np.minimum((r + x) * np.log((alpha + big_t) / (alpha + t_x)), 700.0)),
        0.0,
    )
    return np.asarray(head * tail / (1 + alive_odds))


def expected_spend(params: GammaGamma, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """E[M | x, m_x]: the expected spend per future purchase; the population mean for a
    customer without a (positive) repeat purchase."""
    p, q, g = params.p, params.q, params.gamma
    x = x.astype(np.float64)
    known = (x > 0) & np.isfinite(m) & (m > 0)
    m = np.where(known, m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        individual = (g + m * x) * p / (p * x + q - 1)
    return np.where(known, individual, params.mean())


# --------------------------------------------------------------------------------------- fits
@dataclass
class Fit:
    """What :func:`fit` found: the parameters, or why there are none (``note``)."""

    status: str
    note: str | None
    horizon_days: int
    customers: int
    repeat_customers: int
    bgnbd: BGNBD | None = None
    gamma_gamma: GammaGamma | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any] | None:
        if self.bgnbd is None:
            return None
        out: dict[str, Any] = {"bgnbd": vars(self.bgnbd)}
        out["gamma_gamma"] = None if self.gamma_gamma is None else vars(self.gamma_gamma)
        return out


def _columns(summary: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def col(name: str) -> np.ndarray:
        return np.asarray(summary.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    return col("frequency"), col("recency"), col("age"), col("repeat_value")


def fit(summary: pa.Table, config: PredictiveTraits) -> Fit:
    """Fit both models on the summary, unless it is too little data to."""
    x, t_x, big_t, m = _columns(summary)
    n, repeat = len(x), int(np.sum(x > 0))
    out = Fit("skipped", None, config.horizon_days, n, repeat)
    if n < config.min_customers:
        out.note = (
            f"{n} customers with an order, fewer than traits.predictive.min_customers "
            f"({config.min_customers}): no fit, the predictive traits stay NULL"
        )
        return out
    if repeat < config.min_repeat_customers:
        out.note = (
            f"{repeat} customers bought on a second day, fewer than "
            f"traits.predictive.min_repeat_customers ({config.min_repeat_customers}): no fit, "
            "the predictive traits stay NULL"
        )
        return out
    started = time.perf_counter()
    out.bgnbd, bg_quality = fit_bgnbd(x, t_x, big_t)
    out.quality["bgnbd"] = bg_quality
    positive = int(np.sum((x > 0) & (m > 0)))
    if positive >= config.min_repeat_customers:
        out.gamma_gamma, gg_quality = fit_gamma_gamma(x, m)
        out.quality["gamma_gamma"] = gg_quality
        if out.gamma_gamma.q <= 1:  # no finite mean spend: the CLV is left NULL
            out.note = "the spend model has no finite mean (q ≤ 1): predicted_clv stays NULL"
            out.gamma_gamma = None
    else:
        out.note = (
            f"{positive} repeat buyers with a positive spend: no spend model, predicted_clv "
            "stays NULL"
        )
    out.quality["fit_seconds"] = round(time.perf_counter() - started, 3)
    out.status = "fitted"
    return out


def predict(summary: pa.Table, result: Fit) -> pa.Table:
    """``customer_id, p_alive, expected_orders, predicted_clv`` for the summary's customers."""
    x, t_x, big_t, m = _columns(summary)
    assert result.bgnbd is not None
    alive = p_alive(result.bgnbd, x, t_x, big_t)
    orders = expected_purchases(result.bgnbd, result.horizon_days, x, t_x, big_t)
    if result.gamma_gamma is not None:
        clv = orders * expected_spend(result.gamma_gamma, x, m)
    else:
        clv = np.full(len(x), np.nan)

    def clean(values: np.ndarray, digits: int) -> pa.Array:
        values = np.round(values, digits)
        return pa.array(values, pa.float64(), mask=~np.isfinite(values))

    return pa.table(
        {
            "customer_id": summary.column("customer_id"),
            "p_alive": clean(alive, 6),
            "expected_orders": clean(orders, 6),
            "predicted_clv": clean(clv, 2),
        }
    )


def _write(wh: Warehouse, predictions: pa.Table, *, others: bool = False) -> int:
    """``predictions`` into ``customers``; ``others``: every other customer's predictive traits
    set to NULL (a full build's rows kept the previous fit's until now)."""
    temp_table(wh, _RESULTS, predictions)
    updated = wh.execute(
        "UPDATE customers SET p_alive = p.p_alive, expected_orders = p.expected_orders, "
        "predicted_clv = p.predicted_clv FROM _predictive p "
        "WHERE customers.customer_id = p.customer_id"
    )
    if others:
        _clear(wh, "customer_id NOT IN (SELECT customer_id FROM _predictive)")
    drop(wh, _RESULTS.name)
    return max(updated, 0)


def _clear(wh: Warehouse, where: str = "TRUE") -> None:
    wh.execute(
        "UPDATE customers SET p_alive = NULL, expected_orders = NULL, predicted_clv = NULL "
        "WHERE (p_alive IS NOT NULL OR expected_orders IS NOT NULL OR predicted_clv IS NOT NULL) "
        f"AND {where}"
    )


def _record(wh: Warehouse, result: Fit, now: datetime) -> None:
    wh.execute("DELETE FROM predictive_fits WHERE fitted_at = CAST(? AS TIMESTAMPTZ)", [now])
    params = result.params()
    wh.execute(
        "INSERT INTO predictive_fits (fitted_at, status, note, horizon_days, customers, "
        "repeat_customers, params, quality) VALUES (CAST(? AS TIMESTAMPTZ), ?, ?, ?, ?, ?, "
        "CAST(? AS JSON), CAST(? AS JSON))",
        [
            now,
            result.status,
            result.note,
            result.horizon_days,
            result.customers,
            result.repeat_customers,
            None if params is None else json.dumps(params),
            json.dumps(result.quality),
        ],
    )


def refresh(wh: Warehouse, project: Project) -> dict[str, int]:
    """The full build's step, after its commit: the summary and the fit with no lock held (the
    fit is the CPU-heavy part); then in one transaction holding the tables a profile rebuild
    holds — so a real-time rebuild waits, as it waits for the build — the summary read again
    (an order stored during the fit counts, as a real-time rebuild of its customer would have
    counted it), the predictions written, every other customer's cleared, the fit recorded.
    With no order stored meanwhile the two summaries are equal: the same values as fitting
    and writing in one go."""
    config = project.config.traits.predictive
    _scipy()
    now = clock.now()
    result = fit(read_summary(wh, project, now=now), config)
    with wh.transaction():
        wh.hold(*WRITES)
        written = 0
        if result.status == "fitted":
            summary = read_summary(wh, project, now=now)
            written = _write(wh, predict(summary, result), others=True)
        else:
            _clear(wh)
        _record(wh, result, now)
    return {"predictive_customers": written}


def latest_fit(wh: Warehouse) -> Fit | None:
    """The last fit recorded (by ``fitted_at``), or None."""
    rows = wh.fetch(
        "SELECT status, note, horizon_days, customers, repeat_customers, "
        "CAST(params AS VARCHAR), CAST(quality AS VARCHAR), fitted_at FROM predictive_fits "
        "ORDER BY fitted_at DESC LIMIT 1"
    )
    if not rows:
        return None
    status, note, horizon, customers, repeat, params, quality, fitted_at = rows[0]
    out = Fit(str(status), note, int(horizon), int(customers), int(repeat))
    out.quality = json.loads(quality) if quality else {}
    out.quality["fitted_at"] = fitted_at.isoformat() if fitted_at else None
    if params:
        p = json.loads(params)
        out.bgnbd = BGNBD(**p["bgnbd"])
        out.gamma_gamma = GammaGamma(**p["gamma_gamma"]) if p.get("gamma_gamma") else None
    return out


def refresh_scope(wh: Warehouse, project: Project, scope: str) -> None:
    """The real-time path's step: the rebuilt customers of ``scope`` get their predictions from
    the last fit's parameters (the fit itself is the full build's), at ``--now``."""
    result = latest_fit(wh)
    if result is None or result.bgnbd is None:
        return
    result.horizon_days = project.config.traits.predictive.horizon_days
    summary = read_summary(wh, project, scope)
    if summary.num_rows:
        _write(wh, predict(summary, result))
