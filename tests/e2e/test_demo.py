"""``personify demo``: a newcomer's first command, end to end through the console script."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest

from personify.delivery.outbox import file_name
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
    _assert_the_newer_features(project, out)

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


def _plain_text(eml: Path) -> tuple[str, str]:
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    return str(message["Subject"]), body.get_content()


def _assert_the_newer_features(project: Path, out: str) -> None:
    """The demo project uses the newer features and its summary says so: a French variant for
    French customers, a footer partial, predictive traits, an uploaded list, a relation and an
    alert — each with the command to try next."""
    where = ("--project", str(project))
    for words in (
        "Languages",
        "Partials",
        "Predictive",
        "Lists",
        "Relations",
        "Alerts    firing: dirty_data",
        "personify lists list --project",
        "personify alerts list --project",
        "personify traits predictive --holdout",
        "FROM loyalty GROUP BY tier",
    ):
        assert words in out, words

    # languages: every cart email to a French-speaking customer (locale from the CRM's
    # hs_language) is the French variant, prices written the French way, its footer French
    sent = personify_json(
        "sql",
        "SELECT m.idempotency_key AS key, m.subject, c.locale FROM messages m "
        "JOIN customers c ON c.customer_id = m.customer_id "
        "WHERE m.status = 'sent' AND m.template = 'abandoned_cart' ORDER BY 1",
        *where,
    )["rows"]
    french = [r for r in sent if (r["locale"] or "").lower().startswith("fr")]
    others = [r for r in sent if not (r["locale"] or "").lower().startswith("fr")]
    assert french and others
    assert all(r["subject"].endswith("votre panier vous attend") for r in french)
    assert not any("votre panier" in r["subject"] for r in others)
    subject, text = _plain_text(project / "outbox" / file_name(french[0]["key"]))
    assert subject == french[0]["subject"]
    assert "Vous avez oublié quelque chose" in text and "Retrouver mon panier" in text
    assert re.search(r"\d+,\d\d\xa0€", text), text  # Babel: 52,00 € (a no-break space)
    assert re.search(r"jusqu'au \d{1,2} [a-zéû]+ 20\d\d", text), text  # 7 février 2026
    assert re.search(r"\d+\xa0% de réduction", text), text  # the code's value: 15 %
    assert "Retours gratuits sous 30 jours" in text and "Se désabonner" in text
    # the partial: the shared footer in the other emails (both journeys)
    _, text = _plain_text(project / "outbox" / file_name(others[0]["key"]))
    assert "Free returns within 30 days" in text and "You left something behind" in text
    engaged = sorted((project / "outbox").glob("re_engagement_*.eml"))
    assert engaged and "Free returns within 30 days" in _plain_text(engaged[0])[1]

    # predictive traits: filled for the customers with an order, read by a segment
    filled = personify_json(
        "sql",
        "SELECT count(p_alive) AS alive, count(expected_orders) AS orders, "
        "count(predicted_clv) AS clv, count(last_purchase_at) AS buyers, "
        "count(*) FILTER (WHERE p_alive IS NOT NULL AND last_purchase_at IS NULL) AS odd "
        "FROM customers",
        *where,
    )["rows"][0]
    assert 100 < filled["alive"] <= filled["buyers"] and filled["odd"] == 0
    # the CRM's contacts carry HubSpot's hs_timezone, which the preset maps: send times in
    # the customer's zone need it (the world's CRM once served it as `timezone`, read by nobody)
    zones = personify_json(
        "sql",
        "SELECT count(timezone) AS zoned, count(*) FILTER (WHERE timezone = 'Europe/Paris') "
        "AS paris FROM customers",
        *where,
    )["rows"][0]
    assert zones["zoned"] > 100 and zones["paris"] > 0, zones
    assert filled["alive"] == filled["orders"] == filled["clv"]
    members = {
        r["segment"]: r["n"]
        for r in personify_json(
            "sql",
            "SELECT segment, count(*) AS n FROM segment_memberships WHERE exited_at IS NULL "
            "GROUP BY segment",
            *where,
        )["rows"]
    }
    assert members.get("likely_buyers", 0) > 0

    # the VIP list: uploaded from the world's sheet, its two bad rows quarantined, its segment
    # has the list's customers; the relation's segment reads the team's loyalty table
    lists = personify_json("lists", "list", *where)["lists"]
    vip = next(x for x in lists if x["list"] == "vip")
    assert vip["members"] > 0 and vip["quarantined"] == 2
    assert members.get("vip", 0) == vip["customers"] > 0
    assert members.get("loyalty_gold", 0) > 0

    # the alert: the world's dirt makes dirty_data fire; ops got an email in the outbox
    alerts = {a["name"]: a for a in personify_json("alerts", "list", *where)}
    assert set(alerts) == {"sync_failing", "dirty_data"}
    assert alerts["dirty_data"]["state"] == "firing" and alerts["sync_failing"]["state"] == "ok"
    told = list((project / "outbox").glob("alert-dirty_data_ops_*.eml"))
    assert len(told) == 1 and "dirty_data" in _plain_text(told[0])[0]


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
