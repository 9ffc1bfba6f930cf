"""REST sources from the command line against the real local mock APIs: ``personify sync``
pulls the four presets; a process killed mid-sync and run again ends with the warehouse equal to
the source; a second sync pulls only what changed; ``personify status`` shows each source's last
run and next run; the server's scheduler syncs sources on their schedule."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personify.config import load_project
from personify.demo.mock_apis import TOKEN, MockApis, sample_apis, serve_mock_apis
from personify.server.scheduler import scheduled_syncs
from personify.session import Session
from tests.e2e.cli import PERSONIFY, personify, personify_json

PROJECT = """\
name: rest-e2e
warehouse: duckdb:///warehouse.duckdb
sources:
  - name: crm
    kind: rest
    preset: hubspot_contacts
    batch_rows: 100
    client:
      base_url: {url}
      auth: {{type: bearer, token: "${{API_TOKEN}}"}}
  - name: shop
    kind: rest
    preset: shopify_orders
    client:
      base_url: {url}
      auth: {{type: api_key, name: X-Shopify-Access-Token, api_key: "${{API_TOKEN}}"}}
      requests_per_second: 1000
      backoff_base: 0.01
    schedule: {{every: 15m}}
  - name: helpdesk
    kind: rest
    preset: zendesk_tickets
    client:
      base_url: {url}
      auth: {{type: http_basic, username: "me@example.org/token", password: "${{API_TOKEN}}"}}
  - name: payments
    kind: rest
    preset: stripe_charges
    client:
      base_url: {url}
      auth: {{type: http_basic, username: "${{API_TOKEN}}"}}
"""


@pytest.fixture
def apis() -> MockApis:
    apis = sample_apis(600)
    apis.zendesk_page_size = 250
    return apis


@pytest.fixture
def project(tmp_path: Path, apis: MockApis) -> Iterator[Path]:
    with serve_mock_apis(apis) as url:
        root = tmp_path / "project"
        root.mkdir()
        (root / "personify.yml").write_text(PROJECT.format(url=url))
        (root / ".env").write_text(f"API_TOKEN={TOKEN}\n")
        yield root


def scalar(root: Path, sql: str) -> object:
    """One value read in process (the CLI is exercised by sync and status; a read through it
    would only cost another interpreter start)."""
    os.environ.setdefault("API_TOKEN", TOKEN)
    with Session(load_project(root)) as session:
        return session.warehouse.scalar(sql)


@pytest.mark.slow
def test_sync_pulls_every_preset_and_status_reports_the_runs(project: Path, apis: MockApis) -> None:
    results = personify_json("sync", "--project", str(project))
    by_source = {r["source"]: r for r in results}
    assert set(by_source) == {"crm", "shop", "helpdesk", "payments"}
    items = sum(len(o["line_items"]) for o in apis.orders)
    assert by_source["shop"]["counts"]["rows_loaded"] == len(apis.orders) + items
    assert by_source["crm"]["counts"]["pages"] == 6  # HubSpot: 100 per page
    assert by_source["helpdesk"]["counts"]["pages"] == 3  # the export: 250 per page here
    assert scalar(project, "SELECT count(*) FROM tickets") == len(apis.tickets)
    assert scalar(project, "SELECT count(*) FROM orders") == len(apis.orders) * 2  # + charges
    status = personify_json("status", "--project", str(project))
    shop = next(s for s in status["sources"] if s["name"] == "shop")
    assert shop["last_run_status"] == "succeeded"
    assert shop["last_run_rows"] == len(apis.orders) + items
    assert shop["schedule"] == "every 15m" and shop["next_run_at"] is not None
    assert shop["last_error"] is None

    apis.upsert("orders", {**apis.orders[10], "total_price": "99.00"})
    again = personify_json("sync", "shop", "--project", str(project))
    assert again[0]["counts"]["pages"] == 1
    # the changed order and the two in the 1-minute overlap, with their line items
    assert again[0]["counts"]["rows_read"] <= 3 * 4
    total = scalar(project, f"SELECT total FROM orders WHERE order_id = '{apis.orders[10]['id']}'")
    assert total == 99.0


def test_a_failing_api_is_reported_by_status(project: Path, apis: MockApis) -> None:
    apis.faults.refuse_next = 1
    done = personify("sync", "helpdesk", "--project", str(project))
    assert done.returncode != 0
    assert "answered 400" in done.stderr and TOKEN not in done.stderr
    status = personify_json("status", "--project", str(project))
    helpdesk = next(s for s in status["sources"] if s["name"] == "helpdesk")
    assert helpdesk["last_run_status"] == "failed" and "400" in helpdesk["last_error"]


def test_a_failed_scheduled_sync_logs_where_to_see_why(
    project: Path, apis: MockApis, caplog: pytest.LogCaptureFixture
) -> None:
    text = (project / "personify.yml").read_text().replace("every: 15m", "every: 0.5s")
    (project / "personify.yml").write_text(text)
    os.environ.setdefault("API_TOKEN", TOKEN)
    apis.faults.refuse_next = 1
    with Session(load_project(project)) as session, scheduled_syncs(session) as scheduler:
        deadline = time.monotonic() + 30
        while scheduler.runs < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    failed = [r.getMessage() for r in caplog.records if "scheduled sync of shop" in r.getMessage()]
    assert "`personify status` shows why" in failed[0] and TOKEN not in failed[0]


@pytest.mark.slow
def test_a_sync_killed_mid_way_resumes_and_ends_equal_to_the_source(
    project: Path, apis: MockApis
) -> None:
    apis.faults.delay_seconds = 0.15  # slow pages: time to kill the process between them
    apis.faults.rate_limit_every = 7  # and 429s on the way
    env = {**os.environ, "API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [PERSONIFY, "sync", "crm", "--project", str(project), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while apis.data_requests("/contacts/search") < 3:
            assert proc.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = scalar(project, "SELECT count(*) FROM customer_records")
    assert 0 < int(stored) < len(apis.contacts)  # it died half way
    apis.faults.delay_seconds = 0
    before = apis.data_requests("/contacts/search")
    resumed = personify_json("sync", "crm", "--project", str(project))[0]["counts"]
    assert resumed["pages"] < 6  # resumed, not restarted
    assert apis.data_requests("/contacts/search") - before == resumed["requests"]
    with Session(load_project(project)) as session:
        ids = session.warehouse.fetch("SELECT record_id FROM customer_records ORDER BY record_id")
    assert [r[0] for r in ids] == sorted(c["id"] for c in apis.contacts)  # none lost, none twice


def test_the_scheduler_syncs_sources_when_due(project: Path, apis: MockApis) -> None:
    text = (project / "personify.yml").read_text().replace("every: 15m", "every: 0.5s")
    (project / "personify.yml").write_text(text)
    os.environ.setdefault("API_TOKEN", TOKEN)
    with Session(load_project(project)) as session:
        with scheduled_syncs(session) as scheduler:
            assert [s.name for s in scheduler.sources] == ["shop"]
            deadline = time.monotonic() + 30
            while scheduler.runs < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        count = session.warehouse.scalar("SELECT count(*) FROM orders")
        assert count == len(apis.orders)
        assert session.warehouse.scalar("SELECT count(*) FROM customer_records") == 0  # crm: no


@pytest.mark.slow
def test_the_demo_pulls_its_world_from_live_apis_and_stays_usable(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    summary = personify_json("demo", str(root), "--customers", "100", timeout=300)  # the default
    by_source = {s["source"]: s for s in summary["sources"]}
    for name in ("crm", "shop_orders", "helpdesk", "payments"):
        assert by_source[name]["counts"]["pages"] >= 1, name
        assert by_source[name]["counts"]["rows_loaded"] > 0, name
    hooks = by_source["shop_webhooks"]["counts"]  # ten signed deliveries (the world has dirt)
    assert hooks["rows_read"] == 10 == hooks["rows_loaded"] + hooks["rows_quarantined"]
    text = (root / "personify.yml").read_text()
    assert "base_url: local:demo" in text and "kind: webhook" in text
    assert "path: data/orders.parquet" not in text  # the orders come from the shop's API
    # later runs bring the mock APIs up on demand, pull only what changed, send nothing twice
    again = personify_json("run", "--project", str(root), timeout=300)
    sync = next(s for s in again["stages"] if s["name"] == "sync")
    assert sync["counts"]["pages"] == 4  # one page per API: the overlap window only
    status = personify_json("status", "--project", str(root))
    assert status["quarantine"]["total"] == summary["quarantine"]["total"]  # none twice
    crm = next(s for s in status["sources"] if s["name"] == "crm")
    assert crm["kind"] == "rest" and crm["last_run_status"] == "succeeded"
    hooks_status = next(s for s in status["sources"] if s["name"] == "shop_webhooks")
    # the world's ten deliveries, then one per purchase the simulated recipients made
    reactions = summary["reactions"]
    bought = reactions["purchases"] + reactions["held_out_purchases"]
    assert hooks_status["deliveries"] == 10 + bought and hooks_status["last_sync_at"] is not None


def quarantined(root: Path) -> dict[tuple[str, str], int]:
    rows = personify_json(
        "sql",
        "SELECT source, reason, count(*) AS n FROM quarantine GROUP BY ALL",
        "--project",
        str(root),
    )["rows"]
    return {(r["source"], r["reason"]): r["n"] for r in rows}


@pytest.mark.slow
def test_the_live_demo_quarantines_what_the_file_demo_does(tmp_path: Path) -> None:
    """The same world through its APIs and through its files: the same bad records end in the
    quarantine for the same reasons — but for what only a file can carry (README, "Live demo"):
    malformed JSON lines (an API answers JSON), and a ticket's requester email (a Zendesk ticket
    names its requester by id). The order items' flaws are the ``shop_orders`` source's there
    (line items nested in the orders) and ``shop_order_items``' here (a file of their own)."""
    now = "2026-01-31T09:00:00Z"
    live, files = tmp_path / "live", tmp_path / "files"
    personify_json("demo", str(live), "--customers", "300", "--now", now, timeout=300)
    personify_json("demo", str(files), "--customers", "300", "--now", now, "--files", timeout=300)
    from_files = quarantined(files)
    only_in_files = {
        k: from_files.pop(k)
        for k in [("crm", "malformed_json"), ("helpdesk", "malformed_json")]
        + [("helpdesk", "invalid_email")]
    }
    assert only_in_files == {
        ("crm", "malformed_json"): 2,
        ("helpdesk", "malformed_json"): 2,
        ("helpdesk", "invalid_email"): 1,
    }
    items = from_files.pop(("shop_order_items", "out_of_range"))
    from_files[("shop_orders", "out_of_range")] = items
    assert quarantined(live) == from_files
