"""``personify reconcile`` from the command line against a real local mock API: after a sync it
is clean; rows deleted and altered in the warehouse and records added at the source after the
sync are reported (the latter as pending), ``personify status`` flags the run beyond the
threshold, ``--repair`` fixes them and a second reconcile is clean."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from personify.config import load_project
from personify.demo.mock_apis import TOKEN, MockApis, sample_apis, serve_mock_apis
from personify.session import Session
from tests.e2e.cli import personify, personify_json

PROJECT = """\
name: reconcile-e2e
warehouse: duckdb:///warehouse.duckdb
sources:
  - name: shop
    kind: rest
    preset: shopify_orders
    client:
      base_url: {url}
      auth: {{type: api_key, name: X-Shopify-Access-Token, api_key: "${{API_TOKEN}}"}}
      requests_per_second: 1000
      backoff_base: 0.01
quality:
  reconcile: {{threshold: 1}}
"""


@pytest.fixture
def apis() -> MockApis:
    return sample_apis(80)


@pytest.fixture
def project(tmp_path: Path, apis: MockApis) -> Iterator[Path]:
    with serve_mock_apis(apis) as url:
        root = tmp_path / "project"
        root.mkdir()
        (root / "personify.yml").write_text(PROJECT.format(url=url))
        (root / ".env").write_text(f"API_TOKEN={TOKEN}\n")
        yield root


def execute(root: Path, sql: str, params: list[object]) -> None:
    os.environ.setdefault("API_TOKEN", TOKEN)
    with Session(load_project(root)) as session:
        session.warehouse.execute(sql, params)


@pytest.mark.slow  # ~10 CLI processes
def test_reconcile_finds_planted_drift_and_repair_makes_it_clean(
    project: Path, apis: MockApis
) -> None:
    p = ["--project", str(project)]
    assert personify("sync", *p).returncode == 0
    clean = personify_json("reconcile", *p)
    assert clean["status"] == "clean" and clean["discrepancies"] == 0

    deleted, altered = str(apis.orders[1]["id"]), str(apis.orders[2]["id"])
    execute(project, "DELETE FROM orders WHERE order_id = ?", [deleted])
    execute(project, "UPDATE orders SET email = 'x@example.org' WHERE order_id = ?", [altered])
    later = datetime.now(UTC) + timedelta(minutes=5)
    apis.upsert("orders", {**apis.orders[0], "id": 5999999999999, "line_items": []}, at=later)

    found = personify_json("reconcile", "shop", *p)
    orders = next(t for t in found["tables"] if t["table"] == "orders")
    assert orders["missing_in_warehouse"] == 1 and orders["mismatched"] == 1
    assert orders["pending"] == 1 and orders["fields"] == {"email": 1}
    assert {(s["key"], s["kind"], s["pending"]) for s in orders["sample"]} == {
        (deleted, "missing_in_warehouse", False),
        (altered, "mismatch", False),
        ("5999999999999", "missing_in_warehouse", True),
    }
    assert found["flagged"] is True  # 2 > threshold 1
    assert "x@example.org" not in str(found)  # field names, never values

    status = personify_json("status", *p)
    assert status["reconciliation"]["flagged"] is True
    human = personify("status", *p)
    assert "flagged for review" in human.stdout
    table = personify("reconcile", "--check", *p)
    assert table.returncode == 1 and "flagged for review" in table.stdout
    assert f"orders {deleted}: missing_in_warehouse" in table.stdout

    repaired = personify_json("reconcile", "--repair", *p)
    assert repaired["repaired"] == 3 and repaired["flagged"] is False
    again = personify_json("reconcile", *p)
    assert again["status"] == "clean" and again["discrepancies"] == again["pending"] == 0
    assert personify_json("status", *p)["reconciliation"]["flagged"] is False


def test_reconcile_refuses_an_unknown_source(project: Path) -> None:
    done = personify("reconcile", "nope", "--project", str(project))
    assert done.returncode != 0 and "nope" in done.stderr
