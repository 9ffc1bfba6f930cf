"""Predictive traits on DuckDB: summary + BG/NBD and Gamma-Gamma fits + predictions written
back, for N customers (default 1M).

The orders are generated vectorized from the BG/NBD process (Poisson purchases at a
Gamma-distributed rate, a Beta-distributed drop-out after each; first purchases spread over two
years; Gamma-Gamma spends), so the fit should recover the parameters (printed beside the true
ones). Baseline in the same run: the summary query alone — the one aggregate over ``orders`` the
feature adds to the warehouse's work. CPU is ``time.process_time()`` (every thread of the
process). Goal: fit + predict for 1M customers in seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify import clock
from personify.config import Project, parse_config
from personify.profiles import predictive
from personify.warehouse import connect, table

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
TRUE = {"r": 0.7, "alpha": 20.0, "a": 0.9, "b": 3.5}


def orders(n: int, seed: int) -> pa.Table:
    """BG/NBD purchases of ``n`` customers (one order each time), time in days before NOW."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    age = rng.uniform(1, 730, n)  # first purchase this many days before NOW
    nu = rng.gamma(4.0, 1 / 60.0, n)  # Gamma-Gamma (p=6, q=4, gamma=60): her spend's rate
    cust, times = [np.arange(n)], [np.zeros(n)]
    t, alive, idx = np.zeros(n), np.ones(n, bool), np.arange(n)
    while idx.size:
        t[idx] += rng.exponential(1 / lam[idx])
        bought = t[idx] <= age[idx]
        idx = idx[bought]
        cust.append(idx)
        times.append(t[idx].copy())
        idx = idx[rng.random(idx.size) >= drop[idx]]  # survives this purchase
    del alive
    c, at = np.concatenate(cust), np.concatenate(times)
    base = np.datetime64(NOW.replace(tzinfo=None), "us")
    created = base - ((age[c] - at) * 86_400e6).astype("timedelta64[us]")
    ids = pc.binary_join_element_wise("c", pa.array(c).cast(pa.string()), "")
    return pa.table(
        {
            "order_id": pc.binary_join_element_wise(
                "o", pa.array(np.arange(c.size)).cast(pa.string()), ""
            ),
            "customer_id": ids,
            "total": np.round(rng.gamma(6.0, 1 / nu[c]), 2),
            "status": pa.array(["paid"] * c.size),
            "created_at": pa.array(created, TS),
            "source": pa.array(["bench"] * c.size),
        }
    )


def timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = orders(args.customers, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{Path(tmp) / 'bench.duckdb'}"
        project = Project(
            parse_config(f"warehouse: {url}\ntraits:\n  predictive: {{enabled: true}}\n"),
            Path(tmp),
            Path(tmp) / "personify.yml",
        )
        with connect(url) as wh:
            wh.load(table("orders"), data)
            ids = pc.unique(data.column("customer_id"))
            wh.load(
                table("customers"),
                pa.table({"customer_id": ids, "updated_at": pa.array([NOW] * len(ids), TS)}),
            )
            with clock.frozen(NOW):
                summary, s_wall, s_cpu = timed(lambda: predictive.read_summary(wh, project))
                fit, f_wall, f_cpu = timed(
                    lambda: predictive.fit(summary, project.config.traits.predictive)
                )
                preds, p_wall, p_cpu = timed(lambda: predictive.predict(summary, fit))
                counts, r_wall, r_cpu = timed(lambda: predictive.refresh(wh, project))
            filled = wh.scalar("SELECT count(*) FROM customers WHERE p_alive IS NOT NULL")
    assert fit.bgnbd is not None
    print(f"{args.customers:,} customers, {data.num_rows:,} orders, {len(preds):,} predicted")
    print(
        "BG/NBD fit: "
        + ", ".join(f"{k}={getattr(fit.bgnbd, k):.3f} (true {v})" for k, v in TRUE.items())
    )
    if fit.gamma_gamma is not None:
        gg = fit.gamma_gamma
        print(
            f"Gamma-Gamma fit: p={gg.p:.3f} (true 6), q={gg.q:.3f} (true 4), "
            f"gamma={gg.gamma:.2f} (true 60)"
        )
    print(f"distinct (x, t_x, T) rows fit: {fit.quality['bgnbd']['distinct_rows']:,}")
    print()
    print("| step | wall s | CPU s |")
    print("|---|---|---|")
    for label, wall, cpu in (
        ("summary query alone (baseline)", s_wall, s_cpu),
        ("fit (BG/NBD + Gamma-Gamma)", f_wall, f_cpu),
        ("predict (numpy/scipy)", p_wall, p_cpu),
        (
            "refresh: summary + fit, then summary again + predict + write back + record",
            r_wall,
            r_cpu,
        ),
    ):
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
    print(f"| customers with p_alive | {filled:,} | |")
    assert counts["predictive_customers"] == filled == len(preds)


if __name__ == "__main__":
    main()
