"""Validation rules from the command line: ``personify sync`` and ``personify import`` run them
after loading a file, ``personify status`` shows the broken ones (flagged ones for review),
``personify quality check`` runs them on demand, ``personify quality conflicts`` answers on a
project without profiles, a rule naming an unknown column fails with the file's line and key,
and ``personify report quality`` writes an HTML page that headless Chromium opens and draws."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMIUM, chromium_or_skip
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


def test_import_runs_the_rules_and_status_shows_them(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "personify.yml").write_text(PROJECT)
    (root / "more.csv").write_text(ORDERS)
    p = ["--project", str(root)]
    done = personify_json("import", str(root / "more.csv"), "--table", "orders", *p)
    assert done["counts"]["rows_loaded"] == 3
    status = personify_json("status", *p)
    broken = {v["rule"]: v for v in status["quality"]["violations"]}
    assert broken["orders.currency.format.currency"]["sample"] == ["o2"]
    assert broken["orders.total.range"]["violations"] == 1
    assert status["quality"]["flagged"] == ["orders.currency.format.currency"]
    triggers = personify_json("sql", "SELECT DISTINCT trigger FROM quality_violations", *p)
    assert [r["trigger"] for r in triggers["rows"]] == ["import"]


DRIFT_PROJECT = """\
name: drift-e2e
warehouse: duckdb:///warehouse.duckdb
sources:
  - name: shop
    kind: file
    path: "drops/*.csv"
    table: orders
"""


def test_file_schema_drift_shows_in_status_and_the_report(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "drops").mkdir(parents=True)
    (root / "personify.yml").write_text(DRIFT_PROJECT)
    (root / "drops" / "1.csv").write_text(ORDERS)
    p = ["--project", str(root)]
    assert personify("sync", *p).returncode == 0
    assert personify_json("status", *p)["quality"]["schema_changes"] == []  # the baseline
    (root / "drops" / "2.csv").write_text(
        "order_id,email,total,created_at,coupon\no9,d@example.org,5,2026-03-02T10:00:00Z,X1\n"
    )
    assert personify("sync", *p).returncode == 0
    changes = personify_json("status", *p)["quality"]["schema_changes"]
    assert {(c["source"], c["stream"], c["field"], c["change"]) for c in changes} == {
        ("shop", "file:orders", "coupon", "added"),
        ("shop", "file:orders", "currency", "removed"),
    }
    human = personify("status", *p).stdout
    assert "schema drift: shop/file:orders field coupon added (string)" in human
    assert "X1" not in human  # field names, never values

    # personify import observes its files too (its own source name)
    (root / "a.jsonl").write_text('{"order_id": "m1", "total": 1, "created_at": "2026-03-01"}\n')
    (root / "b.jsonl").write_text('{"order_id": "m2", "total": "1", "created_at": "2026-03-01"}\n')
    for name in ("a.jsonl", "b.jsonl"):
        personify_json("import", str(root / name), "--table", "orders", "--source", "manual", *p)
    changes = personify_json("status", *p)["quality"]["schema_changes"]
    assert {
        (c["field"], c["change"], c["old_type"], c["new_type"])
        for c in changes
        if c["source"] == "manual"
    } == {("total", "type_changed", "number", "string")}
    out = tmp_path / "report.html"
    assert personify("report", "quality", "--out", str(out), *p).returncode == 0
    assert "Schema drift" in out.read_text() and "type_changed" in out.read_text()


def test_a_rule_on_an_unknown_column_is_named(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "personify.yml").write_text(PROJECT.replace("column: total", "column: totl"))
    done = personify("quality", "check", "--project", str(root))
    assert done.returncode != 0 and "orders has no column 'totl'" in done.stderr


@pytest.mark.slow  # a browser start
def test_the_html_report_opens_in_chromium_with_its_charts(tmp_path: Path) -> None:
    chromium_or_skip()
    root = tmp_path / "project"
    root.mkdir()
    (root / "personify.yml").write_text(PROJECT)
    (root / "orders.csv").write_text(ORDERS + "o4,d@example.org,x,EUR,2026-03-01T12:00:00Z\n")
    p = ["--project", str(root)]
    assert personify("sync", *p).returncode == 0
    assert personify("reconcile", *p).returncode == 0
    out = tmp_path / "report.html"
    done = personify("report", "quality", "--out", str(out), *p)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert page.count("<svg") >= 3  # violations over time, quarantine, freshness, reconciliation
    assert "orders.currency.format.currency" in page and "euros" not in page
    shot = tmp_path / "report.png"
    browser = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", f"--screenshot={shot}", "--window-size=1100,1600",
         out.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert browser.returncode == 0, browser.stderr[-2000:]
    assert "Uncaught" not in browser.stderr and "ERR_" not in browser.stderr
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # drawn, not blank
