"""``personify quarantine list|show|replay`` as a user runs them: while ``personify serve`` holds
the project (the commands go through it), after the tracking plan is fixed, replayed twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personify.scaffold import init_project
from tests.e2e.test_serve import Server, run, run_json
from tests.e2e.tracking_support import query, start_server_on, write_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "shop"
    init_project(project)
    server = start_server_on(project, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def test_list_show_fix_replay_twice(served: Server) -> None:
    project = ["--project", str(served.project)]
    added = {"type": "track", "event": "Product Added", "anonymousId": "a-1"}
    batch = [
        {**added, "messageId": "q-1", "properties": {"product_id": "sku-1"}},  # no cart_id
        {**added, "messageId": "q-2", "properties": {"product_id": "sku-2", "cart_id": "c"}},
    ]
    r = httpx.post(
        served.url + "/v1/batch",
        json={"batch": batch, "sentAt": "2026-05-01T10:00:00Z"},
        auth=(write_key(served.project), ""),
        timeout=10,
        trust_env=False,
    )
    assert r.json()["quarantined"] == 1
    listed = run_json("quarantine", "list", *project)
    assert listed["counts"] == [{"source": "web", "reason": "tracking_plan_violation", "rows": 1}]
    row = listed["rows"][0]
    assert row["location"] == "/batch/0/properties/cart_id"
    shown = run_json("quarantine", "show", row["id"][:12], *project)
    payload = json.loads(shown["payload"])
    assert payload["messageId"] == "q-1" and payload["sentAt"] == "2026-05-01T10:00:00+00:00"
    still = run_json("quarantine", "replay", *project)
    assert (still["stored"], len(still["still_quarantined"])) == (0, 1)
    plan = served.project / "tracking-plan" / "Product Added.json"
    schema = json.loads(plan.read_text())
    schema["required"] = ["product_id"]
    plan.write_text(json.dumps(schema))
    first = run_json("quarantine", "replay", *project)
    second = run_json("quarantine", "replay", *project)
    assert (first["stored"], second["looked_at"], second["stored"]) == (1, 0, 0)
    assert query(served.project, "SELECT count(*) AS n FROM events")[0]["n"] == 2
    assert run_json("quarantine", "list", *project)["counts"] == []


def test_a_broken_plan_file_is_reported_and_loses_nothing(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    init_project(project)
    plan = project / "tracking-plan" / "Signed Up.json"
    plan.write_text("{not json")
    server = start_server_on(project, tmp_path / "serve.log")
    try:
        said = "tracking-plan/Signed Up.json: not JSON at line 1, column 2"
        assert said in server.output()  # a warning at start-up …
        health = server.get("/healthz")  # … and /healthz says so while the API serves
        assert (health.status_code, health.json()["status"]) == (200, "degraded")
        assert said in health.json()["problems"][0]

        def track(event: str, message_id: str) -> httpx.Response:
            body = {"event": event, "messageId": message_id, "anonymousId": "a-1"}
            auth = (write_key(project), "")
            return httpx.post(server.url + "/v1/track", json=body, auth=auth, trust_env=False)

        assert track("Video Played", "v-1").status_code == 200  # no schema: flows on
        refused = track("Signed Up", "s-1")  # its schema is unreadable: kept aside, not lost
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["reason"] == "tracking_plan_unreadable"
        p = ("--project", str(project))
        status = run_json("status", *p)
        assert any(said in problem for problem in status["problems"])
        human = run("status", *p)
        assert human.returncode == 0 and f"problem: source web: tracking plan: {said}" in (
            " ".join(human.stdout.split())
        )
        ran = run("run", *p)
        assert ran.returncode == 0, ran.stderr
        assert f"warning: source web: tracking plan: {said}" in " ".join(ran.stderr.split())
        plan.write_text('{"type": "object"}')
        replayed = run_json("quarantine", "replay", *p)
        assert (replayed["stored"], replayed["still_quarantined"]) == (1, [])
        assert run_json("status", *p)["problems"] == []
        rows = query(project, "SELECT message_id FROM events ORDER BY 1")
        assert [r["message_id"] for r in rows] == ["s-1", "v-1"]
    finally:
        server.stop()
