"""``personify push`` as a user runs it: a project's customers, built by ``personify run``, go to a
(real, local) CRM — every one once, then only what changed; ``status`` shows the destination;
``serve``'s scheduler pushes when due."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from personify.config import load_project
from personify.demo.mock_apis import TOKEN, MockApis, serve_mock_apis
from personify.server.scheduler import scheduled_syncs
from personify.session import Session
from tests.e2e.cli import personify, personify_json

DESTINATION = """
destinations:
  - name: crm_scores
    kind: rest
    preset: hubspot_contacts
    key: email
    model: |
      SELECT customer_id, email, engagement_score AS engagement, lifecycle_stage
      FROM customer_data WHERE email IS NOT NULL
    client:
      base_url: {url}
      auth: {{type: bearer, token: "${{CRM_TOKEN}}"}}
      requests_per_second: 1000
    schedule: {{every: {every}}}
"""


@pytest.fixture
def apis() -> MockApis:
    return MockApis()


@pytest.fixture
def url(apis: MockApis) -> Iterator[str]:
    with serve_mock_apis(apis) as base:
        yield base


def project_with_customers(project_dir: Path, tmp_path: Path, url: str, every: str) -> Path:
    rows = "\n".join(f"c{i},c{i}@example.org,Name{i}" for i in range(30))
    (tmp_path / "crm.csv").write_text("id,mail,first\n" + rows + "\n")
    done = personify(
        "import", str(tmp_path / "crm.csv"), "--table", "customers", "--map", "customer_id=id",
        "-m", "email=mail", "-m", "first_name=first", "--source", "crm",
        "--project", str(project_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (project_dir / "personify.yml").open("a") as f:
        f.write(DESTINATION.format(url=url, every=every))
    with (project_dir / ".env").open("a") as f:
        f.write(f"\nCRM_TOKEN={TOKEN}\n")
    return project_dir


def test_push_sends_every_customer_once_then_what_changed(
    project_dir: Path, tmp_path: Path, apis: MockApis, url: str
) -> None:
    project = project_with_customers(project_dir, tmp_path, url, "15m")
    dry = personify_json("push", "--dry-run", "--project", str(project))
    assert apis.upserts == 0  # nothing pushed yet: the customers are built by the run
    assert dry[0]["counts"]["rows_model"] == 0
    run = personify_json("run", "--project", str(project))
    stage = next(s for s in run["stages"] if s["name"] == "destinations")
    assert stage["counts"]["rows_sent"] == 30 and apis.upserts == 30
    assert set(apis.pushed["c7@example.org"]) == {"engagement", "lifecycle_stage"}
    again = personify("push", "--project", str(project))
    assert again.returncode == 0, again.stderr
    assert "rows_changed=0" in " ".join(again.stdout.split()) and apis.upserts == 30
    status = personify_json("status", "--project", str(project))
    (crm,) = status["destinations"]
    assert crm["name"] == "crm_scores" and crm["records"] == {"sent": 30}
    assert crm["last_run_status"] == "succeeded" and crm["schedule"] == "every 15m"
    # an erased person: the erasure counts their record in the CRM (to erase there too), and
    # the destination's state forgets them
    export = personify_json("privacy", "export", "c9@example.org", "--project", str(project))
    assert [(d["destination"], d["status"]) for d in export["destinations"]] == [
        ("crm_scores", "sent")
    ]
    erased = personify_json("privacy", "erase", "c9@example.org", "--project", str(project))
    steps = {s["step"]: s["rows"] for s in erased["steps"]}
    assert steps["destination:crm_scores"] == 1
    status = personify_json("status", "--project", str(project))
    assert status["destinations"][0]["records"] == {"sent": 29}
    # a CRM that no longer takes the token: the push fails (exit 1), says why, without it
    apis.token = "rotated"  # noqa: S105  (the mock's credential)
    with Session(load_project(project)) as session:
        session.warehouse.execute(
            "UPDATE customers SET engagement_score = 12.5 WHERE email = 'c3@example.org'"
        )
    refused = personify("push", "--project", str(project))
    assert refused.returncode == 1 and "answered 401" in refused.stdout + refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr


def test_the_scheduler_pushes_when_due(
    project_dir: Path, tmp_path: Path, apis: MockApis, url: str
) -> None:
    project = project_with_customers(project_dir, tmp_path, url, "0.5s")
    assert personify("run", "--project", str(project)).returncode == 0
    pushed = apis.upserts
    assert pushed == 30
    os.environ.setdefault("CRM_TOKEN", TOKEN)
    with Session(load_project(project)) as session:
        session.warehouse.execute(
            "UPDATE customers SET engagement_score = 77.0 WHERE email = 'c3@example.org'"
        )
        with scheduled_syncs(session) as scheduler:
            assert [d.name for d in scheduler.destinations] == ["crm_scores"]
            deadline = time.monotonic() + 30
            while scheduler.runs < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert apis.upserts == 31 and apis.pushed["c3@example.org"]["engagement"] == 77.0
