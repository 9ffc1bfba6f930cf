"""``personify demo``: a newcomer's first command, end to end through the console script."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli import personify, personify_json

NOW = "2026-01-31T09:00:00Z"


def test_demo_builds_runs_and_leaves_a_usable_project(tmp_path: Path) -> None:
    project = tmp_path / "shop-demo"
    done = personify("demo", str(project), "--customers", "1000", "--now", NOW, timeout=300)
    assert done.returncode == 0, done.stderr
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

    again = personify_json("run", "--project", str(project), "--now", NOW)
    sync = next(s for s in again["stages"] if s["name"] == "sync")
    assert sync["counts"]["rows_loaded"] == 0
    assert sync["counts"]["files"] == 0 and sync["counts"]["files_skipped"] >= 9


def test_demo_json_and_rerun_load_nothing_twice(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    first = personify_json("demo", str(project), "--customers", "1000", "--seed", "3", "--now", NOW)
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

    second = personify_json("demo", str(project), "--customers", "1000", "--seed", "3")
    assert second["created"] is False
    assert second["world"]["now"] == first["world"]["now"]
    sync = {s["name"]: s for s in second["run"]["stages"]}["sync"]["counts"]
    assert sync["rows_loaded"] == 0 and sync["files"] == 0
    resent = next(s for s in second["sources"] if s["source"] == "web")["counts"]
    first_web = web["counts"]
    assert resent["rows_duplicate"] == first_web["rows_duplicate"] + first_web["rows_loaded"]
    assert second["tables"]["events"] == events

    other = personify("demo", str(project), "--customers", "1200", "--seed", "3", "--json")
    assert other.returncode != 0
    assert "--reset" in other.stderr
    assert other.stdout == ""
    assert json.loads((project / "data" / "manifest.json").read_text())["customers"] == 1000
