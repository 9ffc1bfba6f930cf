"""Predictive traits on every backend: the (frequency, recency, T, spend) summary computed in
the warehouse equals the one computed here from the same orders, the predictions written into
``customers`` are the model's, rules read them, and too little data leaves them NULL with a
note."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from tests.conformance.audience_data import (
    batch_tags,
    load_customers,
    load_orders,
    realtime_tags,
)
from tests.conformance.test_profiles import load_world, session_on
from tests.unit.profiles.test_profiles_predictive import simulate

pytest.importorskip("scipy")

from personify import clock  # noqa: E402
from personify.audiences.batch import write_tags  # noqa: E402
from personify.audiences.rules import parse_rules  # noqa: E402
from personify.config import Project, parse_config  # noqa: E402
from personify.identity import resolve_batch  # noqa: E402
from personify.profiles import (  # noqa: E402
    build_customers,
    predictive,
    predictive_report,
    profiles_stage,
)
from personify.warehouse import Warehouse  # noqa: E402

NOW = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)
EXCLUDED = ("cancelled", "canceled", "refunded", "failed")


def _project(tmp: Path, url: str, **predictive_keys: Any) -> Project:
    keys = {"enabled": True, "min_customers": 100, "min_repeat_customers": 20, **predictive_keys}
    text = f"warehouse: {url}\ntraits:\n  predictive: {json.dumps(keys)}\n"
    return Project(parse_config(text), tmp, tmp / "personify.yml")


def _orders(n: int, seed: int) -> list[dict[str, Any]]:
    """Orders of ``n`` customers from the BG/NBD process (several a day now and then, some
    cancelled, some after ``NOW``)."""
    rng = np.random.default_rng(seed)
    from personify.profiles.predictive import BGNBD

    x, t_x, big_t = simulate(BGNBD(0.7, 20.0, 0.9, 3.5), n, seed=seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        first = NOW - timedelta(days=float(big_t[i]))
        days = sorted({0.0, float(t_x[i])} | set(rng.uniform(0, t_x[i], int(x[i]))))
        for k, day in enumerate(days):
            rows.append(
                {
                    "order_id": f"o{i}-{k}",
                    "customer_id": f"c{i:04d}",
                    "total": round(float(rng.gamma(5.0, 8.0)), 2),
                    "status": "paid" if rng.random() > 0.05 else "Cancelled",
                    "created_at": first + timedelta(days=day),
                }
            )
        if rng.random() < 0.1:  # after --now: not part of the summary
            rows.append(
                {
                    "order_id": f"o{i}-late",
                    "customer_id": f"c{i:04d}",
                    "total": 99.0,
                    "status": "paid",
                    "created_at": NOW + timedelta(hours=1),
                }
            )
    return rows


def _summary_here(orders: list[dict[str, Any]], now: datetime = NOW) -> pa.Table:
    """The summary as the docstring of :mod:`personify.profiles.predictive` says, in Python."""
    today = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(days=1)
    days: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for o in orders:
        if o["created_at"] > now or (o["status"] or "").lower() in EXCLUDED:
            continue
        day = (o["created_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(days=1)
        days[o["customer_id"]][day] += o["total"]
    out: dict[str, list[Any]] = defaultdict(list)
    for cid in sorted(days):
        d = sorted(days[cid])
        out["customer_id"].append(cid)
        out["frequency"].append(len(d) - 1)
        out["recency"].append(d[-1] - d[0])
        out["age"].append(today - d[0])
        repeat = [days[cid][k] for k in d[1:]]
        out["repeat_value"].append(sum(repeat) / len(repeat) if repeat else None)
    return pa.table(out)


def _stored(wh: Warehouse) -> dict[str, tuple[Any, Any, Any]]:
    rows = wh.fetch("SELECT customer_id, p_alive, expected_orders, predicted_clv FROM customers")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_summary_fit_and_predictions_in_the_warehouse(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = _project(tmp_path, warehouse.url)
    orders = _orders(600, seed=5)
    load_orders(warehouse, orders)
    load_customers(warehouse, [{"customer_id": f"c{i:04d}"} for i in range(601)])  # c0600: none
    expected = _summary_here(orders)

    got = predictive.read_summary(warehouse, proj, now=NOW).sort_by("customer_id")
    assert got.column_names == expected.column_names
    for name in ("customer_id", "frequency", "recency", "age"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    for a, b in zip(
        got.column("repeat_value").to_pylist(),
        expected.column("repeat_value").to_pylist(),
        strict=True,
    ):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12)

    with clock.frozen(NOW):
        counts = predictive.refresh(warehouse, proj)
    assert counts == {"predictive_customers": expected.num_rows}
    fit = predictive.latest_fit(warehouse)
    assert fit is not None and fit.status == "fitted" and fit.bgnbd and fit.gamma_gamma
    assert fit.customers == expected.num_rows
    here = predictive.fit(expected, proj.config.traits.predictive)
    assert fit.bgnbd.r == pytest.approx(here.bgnbd.r, rel=1e-9)  # type: ignore[union-attr]
    assert fit.gamma_gamma.p == pytest.approx(here.gamma_gamma.p, rel=1e-9)  # type: ignore[union-attr]
    predicted = {r["customer_id"]: r for r in predictive.predict(expected, here).to_pylist()}
    stored = _stored(warehouse)
    assert stored["c0600"] == (None, None, None)  # no order: no prediction
    for cid, row in predicted.items():
        assert stored[cid] == pytest.approx(
            (row["p_alive"], row["expected_orders"], row["predicted_clv"]), rel=1e-6
        )
        assert 0 <= stored[cid][0] <= 1 and stored[cid][1] >= 0 and stored[cid][2] >= 0
    # the model says: recent buyers are more likely alive than those long silent among frequent ones
    assert len({v[0] for v in stored.values() if v[0] is not None}) > 50

    # again: the same values, one fit recorded
    with clock.frozen(NOW):
        predictive.refresh(warehouse, proj)
    assert _stored(warehouse) == stored
    assert warehouse.scalar("SELECT count(*) FROM predictive_fits") == 1

    # the real-time step (a few customers rebuilt) predicts theirs as the batch did
    few = ("c0001", "c0002", "c0003")
    warehouse.execute(
        "UPDATE customers SET p_alive = NULL, expected_orders = NULL, predicted_clv = NULL "
        "WHERE customer_id IN (?, ?, ?)",
        list(few),
    )
    with clock.frozen(NOW):
        predictive.refresh_scope(warehouse, proj, "{c} IN ('c0001', 'c0002', 'c0003')")
    assert _stored(warehouse) == stored

    # the holdout: fit as of NOW less the horizon, the purchase days that followed counted
    check = predictive_report.holdout(warehouse, proj, NOW)
    before = _summary_here(orders, NOW - timedelta(days=90))
    after = dict(zip(*_summary_here(orders).select(["customer_id", "frequency"]).columns))
    gained = [
        after[c].as_py() - x.as_py()
        for c, x in zip(*before.select(["customer_id", "frequency"]).columns, strict=True)
    ]
    assert check.status == "fitted" and check.actual_total == sum(gained)
    assert sum(r.customers for r in check.rows) == before.num_rows
    assert check.calibration_end == (NOW - timedelta(days=90)).isoformat()

    # a rule reads the columns as any other
    rules = parse_rules(
        "rules:\n  - id: slipping\n    when: p_alive < 0.3 AND predicted_clv >= 0\n",
        file="rules.yml",
        dialect="duckdb",
    )
    write_tags(warehouse, rules, now=NOW)
    tagged = {r[0] for r in warehouse.fetch("SELECT customer_id FROM customer_tags")}
    assert tagged == {c for c, v in stored.items() if v[0] is not None and v[0] < 0.3}
    assert tagged  # the simulated world has customers who stopped
    assert batch_tags(warehouse) == realtime_tags(warehouse, rules, NOW)  # the same per profile
    # and the view segments read
    assert warehouse.scalar(
        "SELECT count(*) FROM customer_data WHERE expected_orders IS NOT NULL"
    ) == len(predicted)


def test_too_little_data_leaves_them_null_with_a_note(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = _project(tmp_path, warehouse.url)
    load_world(warehouse)
    now = datetime(2026, 2, 10, tzinfo=UTC)
    with clock.frozen(now):
        resolve_batch(warehouse, proj.config.identity)
        counts = profiles_stage(session_on(warehouse, proj))
    assert counts["predictive_customers"] == 0
    fit = predictive.latest_fit(warehouse)
    assert fit is not None and fit.status == "skipped" and fit.bgnbd is None
    assert "fewer than traits.predictive.min_customers (100)" in (fit.note or "")
    assert warehouse.scalar("SELECT count(*) FROM customers WHERE p_alive IS NOT NULL") == 0

    # a fit recorded earlier (parameters known): rebuilding one customer predicts hers with them
    params = {"bgnbd": {"r": 0.5, "alpha": 10.0, "a": 0.8, "b": 2.0}, "gamma_gamma": None}
    warehouse.execute(
        "INSERT INTO predictive_fits (fitted_at, status, horizon_days, customers, "
        "repeat_customers, params) VALUES (CAST(? AS TIMESTAMPTZ), 'fitted', 90, 1000, 100, "
        "CAST(? AS JSON))",
        [now + timedelta(seconds=1), json.dumps(params)],
    )
    (cid,) = warehouse.fetch("SELECT customer_id FROM customers WHERE order_count > 0")[0]
    with clock.frozen(now):
        build_customers(warehouse, proj, [cid])
    alive, orders, clv = _stored(warehouse)[cid]
    assert alive == 1.0  # one purchase day: alive by the model's definition
    bg = predictive.BGNBD(0.5, 10.0, 0.8, 2.0)
    summary = predictive.read_summary(warehouse, proj, now=now)
    row = summary.to_pylist()[0]
    want = predictive.expected_purchases(
        bg, 90, np.array([row["frequency"]]), np.array([row["recency"]]), np.array([row["age"]])
    )[0]
    assert orders == pytest.approx(want, rel=1e-6) and clv is None


def test_off_reads_nothing_and_adds_no_count(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = Project(parse_config(f"warehouse: {warehouse.url}\n"), tmp_path, tmp_path / "p.yml")
    load_world(warehouse)
    with clock.frozen(datetime(2026, 2, 10, tzinfo=UTC)):
        resolve_batch(warehouse, proj.config.identity)
        counts = profiles_stage(session_on(warehouse, proj))
    assert "predictive_customers" not in counts
    assert warehouse.scalar("SELECT count(*) FROM predictive_fits") == 0


def test_a_full_build_fits_after_its_commit_keeping_the_last_predictions_until_then(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit runs once the build has committed: a real-time rebuild (which holds the profile
    tables) gets through during it, and readers meanwhile see the previous predictions, not
    NULL; the fit's write-back then replaces them (here: too little data, so it clears them)."""
    proj = _project(tmp_path, warehouse.url)
    load_world(warehouse)
    now = datetime(2026, 2, 10, tzinfo=UTC)
    with clock.frozen(now):
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
    ids = sorted(r[0] for r in warehouse.fetch("SELECT customer_id FROM customers"))
    assert len(ids) >= 2
    # as a previous fit left them
    warehouse.execute("UPDATE customers SET p_alive = 0.5, expected_orders = 1.5")
    real_fit = predictive.fit
    seen: dict[str, Any] = {}

    def observed_fit(summary: pa.Table, config: Any) -> predictive.Fit:
        seen["during"] = {
            r[0]: r[1] for r in warehouse.fetch("SELECT customer_id, p_alive FROM customers")
        }
        rebuild = threading.Thread(target=lambda: build_customers(warehouse, proj, [ids[0]]))
        rebuild.start()
        rebuild.join(timeout=60)
        seen["rebuilt"] = not rebuild.is_alive()
        return real_fit(summary, config)

    monkeypatch.setattr(predictive, "fit", observed_fit)
    for run in (
        lambda: build_customers(warehouse, proj),
        lambda: profiles_stage(session_on(warehouse, proj)),
    ):
        seen.clear()
        warehouse.execute("UPDATE customers SET p_alive = 0.5, expected_orders = 1.5")
        with clock.frozen(now):
            counts = run()
        assert counts["predictive_customers"] == 0  # too little data: skipped
        assert seen["rebuilt"], "the fit ran while the build held the profile tables"
        assert seen["during"] == {c: 0.5 for c in ids}  # kept across the rebuild, not NULL
        assert warehouse.scalar("SELECT count(*) FROM customers WHERE p_alive IS NOT NULL") == 0
        assert warehouse.scalar("SELECT count(*) FROM customers") == len(ids)


def test_an_order_stored_during_the_fit_counts_in_the_predictions(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = _project(tmp_path, warehouse.url)
    orders = _orders(300, seed=11)
    load_orders(warehouse, orders)
    load_customers(warehouse, [{"customer_id": f"c{i:04d}"} for i in range(301)])  # c0300: none
    real_fit = predictive.fit
    late = {"order_id": "late-1", "customer_id": "c0300", "total": 20.0, "status": "paid"}

    def fit_while_an_order_arrives(summary: pa.Table, config: Any) -> predictive.Fit:
        load_orders(warehouse, [late | {"created_at": NOW - timedelta(days=3)}])
        return real_fit(summary, config)

    monkeypatch.setattr(predictive, "fit", fit_while_an_order_arrives)
    with clock.frozen(NOW):
        counts = predictive.refresh(warehouse, proj)
    expected = _summary_here(orders)
    assert counts == {"predictive_customers": expected.num_rows + 1}
    fit = predictive.latest_fit(warehouse)
    assert fit is not None and fit.customers == expected.num_rows  # fit on what was there
    alive, _, _ = _stored(warehouse)["c0300"]
    assert alive == 1.0  # one purchase day, written with the new fit
    # without that order the values equal fitting and writing in one go
    here = real_fit(expected, proj.config.traits.predictive)
    predicted = {r["customer_id"]: r for r in predictive.predict(expected, here).to_pylist()}
    stored = _stored(warehouse)
    for cid, row in predicted.items():
        assert stored[cid] == pytest.approx(
            (row["p_alive"], row["expected_orders"], row["predicted_clv"]), rel=1e-6
        )
