"""`personify segments …` and `personify rules …` as a user runs them, on a `personify init`
project whose customers are loaded straight into its warehouse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from personify.warehouse import connect
from tests.conformance.audience_data import load_consents, load_customers
from tests.e2e.cli import personify, personify_json

T1 = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
AT1 = "2026-03-31T12:00:00Z"
AT2 = "2026-05-15T12:00:00Z"


def _seed(project: Path) -> None:
    with connect("duckdb:///warehouse.duckdb", root=project) as wh:
        load_customers(
            wh,
            [
                {
                    "customer_id": "ann",
                    "email": "ann@example.org",
                    "engagement_score": 91.0,
                    "last_purchase_at": T1 - timedelta(days=3),
                    "preferred_categories": '["shoes", "bags"]',
                },
                {
                    "customer_id": "bob",
                    "email": "bob@example.org",
                    "engagement_score": 40.0,
                    "last_purchase_at": T1 - timedelta(days=75),
                    "preferred_categories": '["hats"]',
                },
                {"customer_id": "cy", "email": "cy@example.org", "engagement_score": 99.0},
            ],
        )
        load_consents(wh, [("ann", "email_marketing", "granted")])


def test_segments_list_show_preview_refresh(project_dir: Path) -> None:
    _seed(project_dir)
    p = ("--project", str(project_dir))
    listed = personify_json("segments", "list", *p)["segments"]
    assert [(s["name"], s["dialect"], s["members"]) for s in listed] == [
        ("high_value_recent", "mysql", 0)
    ]

    preview = personify_json("segments", "preview", "high_value_recent", "--now", AT1, *p)
    assert preview["size"] == 1
    assert [r["customer_id"] for r in preview["sample"]] == ["ann"]
    assert preview["columns"] == ["customer_id", "email", "purchase_date", "engagement_score"]
    assert "2026-03-31" in preview["sql"] and preview["seconds"] >= 0

    shown = personify_json("segments", "show", "high_value_recent", "--now", AT1, *p)
    assert "DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY)" in shown["source"]
    assert "CAST('2026-03-31' AS DATE)" in shown["sql"]

    refreshed = personify_json("segments", "refresh", "--now", AT1, *p)["refreshed"]
    assert [(r["segment"], r["entered"], r["exited"]) for r in refreshed] == [
        ("high_value_recent", 1, 0)
    ]
    listed = personify_json("segments", "list", *p)["segments"]
    assert (listed[0]["members"], listed[0]["sendable"]) == (1, 1)
    assert listed[0]["refreshed_at"].startswith("2026-03-31T12:00:00")

    later = personify_json("segments", "refresh", "high_value_recent", "--now", AT2, *p)
    assert [(r["entered"], r["exited"]) for r in later["refreshed"]] == [(0, 1)]

    human = personify("segments", "preview", "high_value_recent", "--now", AT1, *p)
    assert human.returncode == 0 and "size: 1 customers" in human.stdout
    missing = personify("segments", "show", "nope", *p)
    assert missing.returncode == 1 and "no segment named 'nope'" in missing.stderr


def test_rules_apply_and_explain(project_dir: Path) -> None:
    _seed(project_dir)
    p = ("--project", str(project_dir))
    applied = personify_json("rules", "apply", "--now", AT1, *p)
    assert (applied["rules"], applied["tagged"], applied["added"]) == (1, 1, 1)

    bob = personify_json("rules", "explain", "bob@example.org", "--now", AT1, *p)
    (rule,) = bob["rules"]
    assert rule["id"] == "re_engagement" and rule["assigned"] and rule["matched"]
    assert rule["condition"] == "last_purchase_at < NOW() - INTERVAL 60 DAY"
    assert rule["fields"]["last_purchase_at"].startswith("2026-01-15T12:00:00")
    assert rule["fields"]["preferred_categories"] == ["hats"]
    assert rule["checks"][0]["result"] is True
    assert bob["tags"] == [
        {"tag": "re_engagement", "rule": "re_engagement", "variables": {"categories": ["hats"]}}
    ]
    assert [t["tag"] for t in bob["stored_tags"]] == ["re_engagement"]

    cy = personify_json("rules", "explain", "cy", "--now", AT1, *p)
    assert cy["rules"][0]["matched"] is None
    assert "unknown" in cy["rules"][0]["reason"]

    human = personify("rules", "explain", "ann@example.org", "--now", AT1, *p)
    assert human.returncode == 0
    assert "condition is false" in human.stdout and "2026-03-28T12:00:00" in human.stdout
    nobody = personify("rules", "explain", "nobody@example.org", *p)
    assert nobody.returncode == 1 and "nobody@example.org" in nobody.stderr


def test_broken_definitions_are_reported_with_file_line_and_column(project_dir: Path) -> None:
    (project_dir / "segments" / "bad.sql").write_text(
        "-- name: bad\nSELECT customer_id\nFROM customers, read_csv('/etc/passwd')\n"
    )
    done = personify("segments", "list", "--project", str(project_dir))
    assert done.returncode == 2
    assert "segments/bad.sql:3: column 17: function read_csv() is not allowed" in done.stderr
    (project_dir / "segments" / "bad.sql").unlink()
    (project_dir / "rules" / "bad.yml").write_text(
        "rules:\n  - id: bad\n    when: last_purchse_at < NOW()\n"
    )
    done = personify("rules", "list", "--project", str(project_dir))
    assert done.returncode == 2
    assert "rules/bad.yml:3: rules[0].when: column 11: unknown profile column" in done.stderr
    assert "did you mean last_purchase_at?" in done.stderr


def test_run_has_an_audiences_stage(project_dir: Path) -> None:
    report = personify_json("run", "--now", AT1, "--project", str(project_dir))
    (stage,) = [s for s in report["stages"] if s["name"] == "audiences"]
    assert stage["counts"]["segments"] == 1 and stage["counts"]["rules"] == 1


def test_run_reports_a_broken_segment_and_exits_1(project_dir: Path) -> None:
    """A segment the warehouse refuses: the run goes on without it (its memberships kept),
    prints its file and the engine's message on stderr, exits 1; `status` shows it."""
    _seed(project_dir)
    p = ("--project", str(project_dir))
    (project_dir / "segments" / "typo.sql").write_text(
        "-- name: typo\nSELECT customer_id FROM customers WHERE ordr_count > 1\n"
    )
    done = personify("run", "--now", AT1, *p)
    assert done.returncode == 1, done.stderr
    assert "delivery" in done.stdout  # every stage ran
    assert (
        "error: audiences: segments/typo.sql: segment 'typo' failed on the warehouse: "
        in done.stderr
    )
    assert "ordr_count" in done.stderr and "hint: fix the query in segments/typo.sql" in done.stderr
    listed = personify_json("segments", "list", *p)["segments"]
    refreshed = {s["name"]: s["refreshed_at"] for s in listed}
    assert refreshed == {"high_value_recent": AT1, "typo": None}

    as_json = personify("run", "--now", AT2, "--json", *p)
    assert as_json.returncode == 1
    errors = json.loads(as_json.stdout)["errors"]
    assert len(errors) == 1 and errors[0].startswith("audiences: segments/typo.sql: ")
    status = personify("status", *p)
    assert "last run: failed" in status.stdout
    assert "last run error: audiences: segments/typo.sql" in status.stdout


def test_segments_refresh_reports_a_broken_segment_and_exits_1(project_dir: Path) -> None:
    """`segments refresh` as `run` does: the other segments are refreshed, the broken one keeps
    its memberships, its file and the engine's message on stderr, exit 1; `status` shows it
    until it refreshes."""
    _seed(project_dir)
    p = ("--project", str(project_dir))
    typo = project_dir / "segments" / "typo.sql"
    typo.write_text("-- name: typo\nSELECT customer_id FROM customers WHERE ordr_count > 1\n")
    done = personify("segments", "refresh", "--now", AT1, *p)
    assert done.returncode == 1, done.stderr
    assert "high_value_recent" in done.stdout and "typo" not in done.stdout  # the table
    assert "error: segments/typo.sql: segment 'typo' failed on the warehouse: " in done.stderr
    assert "ordr_count" in done.stderr and "hint: fix the query in segments/typo.sql" in done.stderr
    listed = personify_json("segments", "list", *p)["segments"]
    assert {s["name"]: s["refreshed_at"] for s in listed} == {
        "high_value_recent": AT1,
        "typo": None,
    }

    as_json = personify("segments", "refresh", "--now", AT2, "--json", *p)
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert [r["segment"] for r in document["refreshed"]] == ["high_value_recent"]
    assert document["failed"] == [{"segment": "typo", "file": "segments/typo.sql", "kind": "sql"}]
    (error,) = document["errors"]
    assert error.startswith("segments/typo.sql: segment 'typo' failed on the warehouse: ")

    status = personify("status", *p)
    assert (
        "segment failing since 2026-05-15T12:00:00+00:00 (sql): segments/typo.sql" in status.stdout
    )
    failing = personify_json("status", *p)["segments_failing"]
    assert [(f["segment"], f["kind"], f["error"]) for f in failing] == [("typo", "sql", error)]

    typo.write_text("-- name: typo\nSELECT customer_id FROM customers WHERE order_count > 1\n")
    assert personify("segments", "refresh", "typo", "--now", AT2, *p).returncode == 0
    assert personify_json("status", *p)["segments_failing"] == []
    assert "segment failing" not in personify("status", *p).stdout


def test_segments_and_status_say_which_segments_rank(project_dir: Path) -> None:
    """A real-time segment that ranks customers against each other (``LIMIT``, a window
    function) is refreshed whole by every real-time pass: `segments list|show` and `status`
    say so, and what in it ranks."""
    (project_dir / "segments" / "top_engaged.sql").write_text(
        "-- name: top_engaged\n"
        "SELECT customer_id FROM customers ORDER BY engagement_score DESC LIMIT 10\n",
        encoding="utf-8",
    )
    p = ("--project", str(project_dir))
    listed = {s["name"]: s for s in personify_json("segments", "list", *p)["segments"]}
    assert (listed["top_engaged"]["real_time"], listed["top_engaged"]["ranks"]) == (
        "whole",
        "LIMIT",
    )
    assert (listed["high_value_recent"]["real_time"], listed["high_value_recent"]["ranks"]) == (
        "per customer",
        None,
    )
    table = personify("segments", "list", *p, env={"COLUMNS": "200"})
    assert "real-time (whole: LIMIT)" in table.stdout
    shown = personify("segments", "show", "top_engaged", *p, env={"COLUMNS": "200"})
    assert "every real-time pass refreshes it whole" in shown.stdout
    status = personify_json("status", *p)
    assert status["segments_whole_in_real_time"] == [
        {"segment": "top_engaged", "file": "segments/top_engaged.sql", "ranks": "LIMIT"}
    ]
    text = personify("status", *p, env={"COLUMNS": "200"})
    assert "refreshed whole by every real-time pass (they rank): top_engaged (LIMIT)" in (
        text.stdout
    )
