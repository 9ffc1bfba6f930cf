"""``personify run`` with predictive traits on, then ``personify traits predictive --holdout``
and ``personify status`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from personify.warehouse import connect, table
from tests.conformance.test_predictive_traits import NOW, _orders
from tests.e2e.cli import personify, personify_json

pytest.importorskip("scipy")


def make_project(root: Path, min_customers: int) -> Path:
    root.mkdir()
    (root / "personify.yml").write_text(
        "name: e2e\nwarehouse: duckdb:///warehouse.duckdb\n"
        "traits:\n  predictive:\n    enabled: true\n    horizon_days: 60\n"
        f"    min_customers: {min_customers}\n    min_repeat_customers: 20\n"
    )
    orders = _orders(500, seed=9)
    for o in orders:  # the shop knows its customers by email; identity gives them ids
        o["email"] = f"{o['customer_id']}@example.org"
        o["source_customer_id"] = o.pop("customer_id")
        o["source"] = "shop"
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.load(table("orders"), pa.Table.from_pylist(orders))
    return root


def test_run_then_the_fit_the_holdout_and_status(tmp_path: Path) -> None:
    root = make_project(tmp_path / "shop", min_customers=100)
    now = NOW.isoformat()
    run = personify_json("run", "--project", str(root), "--now", now)
    profiles = next(s for s in run["stages"] if s["name"] == "profiles")
    assert profiles["counts"]["predictive_customers"] >= 450, profiles
    filled = personify_json(
        "sql",
        "SELECT count(*) AS n FROM customer_data WHERE p_alive BETWEEN 0 AND 1 "
        "AND expected_orders >= 0 AND predicted_clv >= 0",
        "--project",
        str(root),
    )
    assert filled["rows"][0]["n"] >= 450

    page = tmp_path / "reports" / "predictive.html"
    doc = personify_json(
        "traits",
        "predictive",
        "--holdout",
        "--out",
        str(page),
        "--project",
        str(root),
        "--now",
        now,
    )
    assert doc["enabled"] and doc["fit"]["status"] == "fitted"
    assert set(doc["fit"]["params"]["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert doc["fit"]["quality"]["bgnbd"]["converged"]
    hold = doc["holdout"]
    assert hold["status"] == "fitted" and hold["horizon_days"] == 60
    assert [r["frequency"] for r in hold["rows"]][0] == "0"
    assert sum(r["customers"] for r in hold["rows"]) > 300
    text = page.read_text()
    assert '<svg class="chart holdout"' in text and "<polyline" in text

    human = personify("traits", "predictive", "--project", str(root))
    assert human.returncode == 0 and "BG/NBD" in human.stdout, human.stderr
    status = personify_json("status", "--project", str(root))
    assert status["predictive"]["status"] == "fitted"
    profile = personify_json("profile", "c0001@example.org", "--project", str(root))
    assert 0 <= profile["profile"]["p_alive"] <= 1
    shown = personify("profile", "c0001@example.org", "--project", str(root))
    assert "expected_orders" in shown.stdout, shown.stderr


def test_too_little_data_is_said_not_fit(tmp_path: Path) -> None:
    root = make_project(tmp_path / "shop", min_customers=5000)
    run = personify_json("run", "--project", str(root), "--now", NOW.isoformat())
    profiles = next(s for s in run["stages"] if s["name"] == "profiles")
    assert profiles["counts"]["predictive_customers"] == 0
    status = personify_json("status", "--project", str(root))
    assert status["predictive"]["status"] == "skipped"
    assert "min_customers (5000)" in status["predictive"]["note"]
    human = personify("traits", "predictive", "--project", str(root))
    assert "stay NULL" in human.stdout
    no_holdout = personify("traits", "predictive", "--out", "x.html", "--project", str(root))
    assert no_holdout.returncode != 0 and "--holdout" in no_holdout.stderr
