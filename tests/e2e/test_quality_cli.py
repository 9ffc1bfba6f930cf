"""Validation rules from the command line: ``personify sync`` runs them after loading a file,
``personify status`` shows the broken ones (flagged ones for review), ``personify quality check``
runs them on demand, ``personify quality conflicts`` answers on a project without profiles, and
a rule naming an unknown column fails with the file's line and key."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import personify, personify_json

PROJECT = """\
name: quality-e2e
warehouse: duckdb:///warehouse.duckdb
sources:
  - name: shop
    kind: file
    path: orders.csv
    table: orders
quality:
  sample_size: 3
  rules:
    orders:
      - {column: currency, check: format, format: currency, action: flag}
      - {column: total, check: range, min: 0}
"""

ORDERS = """\
order_id,email,total,currency,created_at
o1,a@example.org,10,EUR,2026-03-01T10:00:00Z
o2,c@example.org,12,euros,2026-03-01T11:00:00Z
o3,b@example.org,-1,EUR,2026-03-01T12:00:00Z
"""


def test_sync_runs_the_rules_and_status_flags_them(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "personify.yml").write_text(PROJECT)
    (root / "orders.csv").write_text(ORDERS)
    p = ["--project", str(root)]
    assert personify("sync", *p).returncode == 0
    status = personify_json("status", *p)
    broken = {v["rule"]: v for v in status["quality"]["violations"]}
    assert broken["orders.currency.format.currency"]["sample"] == ["o2"]
    assert broken["orders.total.range"]["violations"] == 1
    assert status["quality"]["flagged"] == ["orders.currency.format.currency"]
    human = personify("status", *p)
    assert "quality rule orders.currency.format.currency (flag): 1 row(s)" in human.stdout
    assert "euros" not in human.stdout + human.stderr

    checked = personify_json("quality", "check", *p)
    assert {v["rule"]: v["violations"] for v in checked} == {
        "orders.currency.format.currency": 1,
        "orders.total.range": 1,
    }
    assert personify_json("quality", "conflicts", *p) == {"per_field": {}, "conflicts": []}


def test_a_rule_on_an_unknown_column_is_named(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "personify.yml").write_text(PROJECT.replace("column: total", "column: totl"))
    done = personify("quality", "check", "--project", str(root))
    assert done.returncode != 0 and "orders has no column 'totl'" in done.stderr
