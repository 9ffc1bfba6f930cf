"""``personify quarantine list|show|replay`` as a user runs them: while ``personify serve`` holds
the project (the commands go through it), after the tracking plan is fixed, replayed twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personify.scaffold import init_project
from tests.e2e.test_serve import Server, run_json
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
