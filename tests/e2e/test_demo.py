"""``personify demo``: a newcomer's first command, end to end through the console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import DEMO_TIMEOUT, personify, personify_json

NOW = "2026-01-31T09:00:00Z"
pytestmark = pytest.mark.timeout(1200)  # a dozen console-script runs per test


def test_demo_builds_runs_and_leaves_a_usable_project(tmp_path: Path) -> None:
    project = tmp_path / "shop-demo"
    done = personify(
        "demo", str(project), "--customers", "1000", "--now", NOW, timeout=DEMO_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr, done.stderr  # e.g. no webhook's real-time update failed
    out = done.stdout
    for words in (
        "1,000 customers",
        "Main job",
        "sync",
        "web ",
        "email_engagement",
        "Quarantined",
        "Write key",
        "Admin token",
        "personify status --project",
        "--dialect mysql",
        "personify serve --project",
    ):
        assert words in out, words
    keys = dict(
        line.split("=", 1) for line in (project / ".env").read_text().splitlines() if "=" in line
    )
    assert keys["PERSONIFY_WRITE_KEY"] in out and keys["PERSONIFY_ADMIN_TOKEN"] in out
    assert (project / "data" / "manifest.json").is_file()

    answer = personify_json("sql", "SELECT count(*) AS n FROM customers", "--project", str(project))
    assert answer["rows"][0]["n"] >= 900

    # the web sessions came through the tracking API (source `web`), not as a file
    by_source = personify_json(
        "sql", "SELECT source, count(*) AS n FROM events GROUP BY source", "--project", str(project)
    )
    counts = {row["source"]: row["n"] for row in by_source["rows"]}
    assert counts.get("web", 0) > 5 * 1000 and "web_history" not in counts
    assert "web_history" not in (project / "personify.yml").read_text()

    # the CRM, orders, tickets and payments came from the live mock APIs (the default)
    text = (project / "personify.yml").read_text()
    assert "base_url: local:demo" in text and "path: data/orders.parquet" not in text
    emails = list((project / "outbox").glob("*.eml"))
    assert emails

    # the recipients reacted (opens, clicks, orders through the project's own API) and the
    # report, read when the attribution window has closed, shows the email's uplift over the
    # demo's 20 % holdout (abandoned carts that got no email)
    assert "Abandoned cart (simulated reactions" in out and "over the holdout" in out
    assert "revenue recovered €" in out
    page = (project / "report.html").read_text()
    assert "<svg" in page and "abandoned_cart" in page
    report_at = "2026-02-03T09:00:00Z"  # NOW + 3 days
    report = personify_json("report", "journeys", "--project", str(project), "--now", report_at)
    cart = [s for s in report["steps"] if s["journey"] == "abandoned_cart"]
    by_variant = {s["variant"]: s for s in cart if s["variant"]}  # None: skipped for consent
    assert set(by_variant) == {"control", "holdout"}
    sent, held = by_variant["control"], by_variant["holdout"]
    assert sent["sends"] > 0 and held["sends"] == 0 and held["assigned"] > 0
    assert sent["unique_opens"] >= sent["unique_clicks"] > 0
    assert sent["conversions"] > 0 and sent["revenue"] > 0
    lift = sent["uplift"]
    assert lift["difference"] > 0 and lift["variant_rate"] > lift["holdout_rate"]
    assert lift["low"] < lift["difference"] < lift["high"]
    # status: the same figures, as the last 7 days' headline (machine opens excluded)
    status = personify_json("status", "--project", str(project), "--now", report_at)
    headline = status["journeys"]["abandoned_cart"]
    assert headline == {
        "sends": sent["sends"],
        "unique_opens": sent["unique_opens"],
        "unique_clicks": sent["unique_clicks"],
        "conversions": sent["conversions"],
        "revenue": sent["revenue"],
        "delivered": sent["delivered"],
        "complained": sent["complained"],
        "complaint_rate": sent["complaint_rate"],
        "complaint_rate_high": sent["complaint_rate"] > status["max_complaint_rate"],
    }
    shown = personify("status", "--project", str(project), "--now", report_at)
    assert shown.returncode == 0, shown.stderr
    assert "Journeys, last 7 days" in shown.stdout and f"{sent['revenue']:,.2f}" in shown.stdout
    later = personify_json("status", "--project", str(project), "--now", "2026-02-10T09:00:00Z")
    assert "abandoned_cart" not in later["journeys"]  # sent more than 7 days before

    # a rerun at the same instant: the APIs come up again, only their overlap window is pulled
    # (nothing new stored), the files are skipped, and nothing is sent twice
    again = personify_json("run", "--project", str(project), "--now", NOW)
    stages = {s["name"]: s["counts"] for s in again["stages"]}
    assert stages["sync"]["files"] == 0 and stages["sync"]["files_skipped"] >= 4
    assert stages["sync"]["pages"] == 4 and stages["sync"]["rows_quarantined"] == 0
    assert stages["delivery"]["sent"] == 0 and stages["journeys"]["decided"] == 0
    assert len(list((project / "outbox").glob("*.eml"))) == len(emails)
    again_report = personify_json(
        "report", "journeys", "--project", str(project), "--now", report_at
    )
    assert again_report == report  # the run at NOW reacted to nothing again


def test_demo_with_files_imports_the_world_from_its_files(tmp_path: Path) -> None:
    project = tmp_path / "file-demo"
    first = personify_json(
        "demo", str(project), "--customers", "1000", "--files", "--now", NOW, timeout=DEMO_TIMEOUT
    )
    by_source = {s["source"]: s["counts"] for s in first["sources"]}
    for name in ("crm", "shop_orders", "shop_order_items", "helpdesk"):
        assert by_source[name]["files"] >= 1 and by_source[name]["rows_loaded"] > 0, name
    assert "shop_webhooks" not in by_source and "payments" not in by_source
    assert "base_url: local:demo" not in (project / "personify.yml").read_text()
    assert first["emails"]["sent"] > 0
    assert first["reactions"] is None  # no webhook source for the simulated orders
    again = personify_json("run", "--project", str(project), "--now", NOW)
    stages = {s["name"]: s["counts"] for s in again["stages"]}
    assert stages["sync"]["rows_loaded"] == 0 and stages["sync"]["files_skipped"] >= 9
    assert stages["delivery"]["sent"] == 0


def test_demo_json_and_rerun_load_nothing_twice(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    first = personify_json(
        "demo",
        str(project),
        "--customers",
        "1000",
        "--seed",
        "3",
        "--now",
        NOW,
        timeout=DEMO_TIMEOUT,
    )
    assert first["created"] is True
    assert first["world"]["customers"] == 1000 and first["world"]["seed"] == 3
    stages = {s["name"]: s for s in first["run"]["stages"]}
    assert stages["sync"]["counts"]["rows_loaded"] > 10_000
    web = next(s for s in first["sources"] if s["source"] == "web")
    assert web["counts"]["rows_loaded"] > 5 * 1000 and web["counts"]["requests"] >= 2
    assert first["quarantine"]["by_source"]["web"] > 0  # flawed events, quarantined by the API
    events = first["tables"]["events"]
    assert events >= 10 * 1000 * 0.95
    assert first["keys"]["write_key"] and first["keys"]["admin_token"]
    assert first["quarantine"]["total"] > 0
    assert len(first["quarantine"]["by_reason"]) >= 4
    assert any("--dialect mysql" in command for command in first["next"])
    reactions = first["reactions"]
    cart = first["emails"]["by_journey"]["abandoned_cart"]
    assert reactions["sent"] == cart["sent"] and reactions["held_out"] == cart["skipped_holdout"]
    assert reactions["messages"] == cart["sent"] + cart["skipped_holdout"]
    assert 0 < reactions["clicks"] <= reactions["opens"] <= reactions["sent"]
    assert reactions["unique_clicks"] == reactions["clicks"]  # each click went through /c/…
    assert reactions["unique_opens"] == reactions["opens"]  # machine hits recorded, not counted
    assert reactions["machine_hits"] > 0
    assert reactions["requests"] < 2_000
    assert any(c.startswith("personify report journeys") for c in first["next"])

    second = personify_json(
        "demo", str(project), "--customers", "1000", "--seed", "3", timeout=DEMO_TIMEOUT
    )
    assert second["created"] is False
    assert second["world"]["now"] == first["world"]["now"]
    stages = {s["name"]: s["counts"] for s in second["run"]["stages"]}
    assert stages["sync"]["files"] == 0
    assert second["quarantine"]["total"] == first["quarantine"]["total"]  # none stored twice
    assert stages["delivery"]["sent"] == 0  # nothing sent twice
    hooks = next(s for s in second["sources"] if s["source"] == "shop_webhooks")["counts"]
    assert hooks["rows_read"] == 10 and hooks["rows_duplicate"] == 10  # the same deliveries
    resent = next(s for s in second["sources"] if s["source"] == "web")["counts"]
    first_web = web["counts"]
    assert resent["rows_duplicate"] == first_web["rows_duplicate"] + first_web["rows_loaded"]
    assert second["tables"]["events"] == events
    same = {k: v for k, v in second["reactions"].items() if k != "seconds"}
    assert same == {k: v for k, v in reactions.items() if k != "seconds"}  # none stored twice

    other = personify(
        "demo", str(project), "--customers", "1200", "--seed", "3", "--json", timeout=DEMO_TIMEOUT
    )
    assert other.returncode != 0
    assert "--reset" in other.stderr
    assert other.stdout == ""
    assert json.loads((project / "data" / "manifest.json").read_text())["customers"] == 1000
