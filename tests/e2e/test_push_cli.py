"""``personify push`` as a user runs it: a project's customers, built by ``personify run``, go to a
(real, local) CRM — every one once, then only what changed; ``status`` shows the destination;
``serve``'s scheduler pushes when due."""

from __future__ import annotations

import os
import time
from pathlib import Path

from personify.config import load_project
from personify.demo.mock_apis import TOKEN, MockApis
from personify.destinations import RECORD_KEY
from personify.privacy.crypto import KeyRing, new_key
from personify.server.scheduler import scheduled_syncs
from personify.session import Session
from tests.conformance.destination_support import apis, url
from tests.e2e.cli import personify, personify_json

__all__ = ["apis", "url"]  # (the fixtures, imported)

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
    (told,) = erased["destinations"]  # (on_remove: ignore: the operator removes it there)
    assert told["cannot_remove"] == 1 and "remove it there" in told["message"]
    shown = personify("privacy", "erase", "c8@example.org", "--project", str(project))
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    assert "Destination crm_scores: the person's record was sent to crm_scores" in said
    assert "cannot be removed by Personify: remove it there" in said
    status = personify_json("status", "--project", str(project))
    assert status["destinations"][0]["records"] == {"sent": 28}
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


REMOVING = """
destinations:
  - name: crm_active
    kind: rest
    preset: hubspot_contacts
    key: email
    on_remove: delete
    model: |
      SELECT customer_id, email, engagement_score AS engagement
      FROM customer_data WHERE email IS NOT NULL AND coalesce(engagement_score, 0) >= 0
    client:
      base_url: {url}
      auth: {{type: bearer, token: "${{CRM_TOKEN}}"}}
      requests_per_second: 1000
privacy:
  encryption_keys: "${{PERSONIFY_ENCRYPTION_KEYS}}"
"""


def test_push_removes_who_left_the_model_and_erasure_forgets_their_key(
    project_dir: Path, tmp_path: Path, apis: MockApis, url: str
) -> None:
    rows = "\n".join(f"c{i},c{i}@example.org,Name{i}" for i in range(12))
    (tmp_path / "crm.csv").write_text("id,mail,first\n" + rows + "\n")
    done = personify(
        "import", str(tmp_path / "crm.csv"), "--table", "customers", "--map", "customer_id=id",
        "-m", "email=mail", "-m", "first_name=first", "--source", "crm",
        "--project", str(project_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (project_dir / "personify.yml").open("a") as f:
        f.write(REMOVING.format(url=url))
    with (project_dir / ".env").open("a") as f:
        f.write(f"\nCRM_TOKEN={TOKEN}\nPERSONIFY_ENCRYPTION_KEYS=k1:{new_key()}\n")
    project = str(project_dir)
    run = personify_json("run", "--project", project)
    stage = next(s for s in run["stages"] if s["name"] == "destinations")
    assert stage["counts"]["rows_sent"] == 12 and len(apis.pushed) == 12

    # two customers leave the model (a negative score, as a churn model might write)
    def leave(*emails: str) -> None:
        with Session(load_project(project_dir)) as session:
            for email in emails:
                session.warehouse.execute(
                    "UPDATE customers SET engagement_score = -1 WHERE email = ?", [email]
                )

    leave("c2@example.org", "c5@example.org")
    dry = personify_json("push", "--dry-run", "--project", project)
    assert dry[0]["counts"]["rows_to_remove"] == 2 and len(dry[0]["removals"]) == 2
    assert not any("c2@" in k or "c5@" in k for k in dry[0]["removals"])
    assert apis.archives == 0
    shown = personify("push", "--dry-run", "--project", project)
    assert "would remove" in shown.stdout and "c2@example.org" not in shown.stdout
    pushed = personify_json("push", "--project", project)
    assert pushed[0]["counts"]["rows_removed"] == 2 and pushed[0]["error"] is None
    assert apis.archives == 2 and "c2@example.org" not in apis.pushed
    status = personify_json("status", "--project", project)
    (crm,) = status["destinations"]
    assert crm["records"] == {"sent": 10} and crm["last_run_removed"] == 2
    text = personify("status", "--project", project)
    assert "removed (last" in text.stdout

    # an erased person: their record becomes a pending removal, which the next push sends,
    # then their state row goes, encrypted key included
    with Session(load_project(project_dir)) as session:
        assert session.warehouse.scalar("SELECT count(record_key) FROM destination_state") == 10
    erased = personify_json("privacy", "erase", "c9@example.org", "--project", project)
    assert {s["step"]: s["rows"] for s in erased["steps"]}["destination:crm_active"] == 1
    assert erased["removals_pending"] == {"crm_active": 1}
    status = personify_json("status", "--project", project)
    assert status["destinations"][0]["removals_pending"] == 1
    # switched to on_remove: ignore meanwhile: the removal can never go — said, and kept
    yml = project_dir / "personify.yml"
    removing = yml.read_text()
    yml.write_text(removing.replace("on_remove: delete", "on_remove: ignore"))
    ignoring = personify("push", "--project", project)
    assert ignoring.returncode == 0, ignoring.stderr
    assert "warning: destination crm_active: 1 erased people's record(s)" in ignoring.stderr
    assert "on_remove: delete again" in ignoring.stderr and "c9@" not in ignoring.stderr
    (said,) = personify_json("push", "--project", project)[0]["warnings"]
    assert "on_remove is ignore" in said
    shown = personify("status", "--project", project)
    assert "problem: destination crm_active: 1 erased" in " ".join(shown.stdout.split())
    counted = personify(
        "push", "--forget-stranded", "crm_active", "--dry-run", "--project", project
    )
    assert counted.returncode == 0, counted.stderr
    assert "crm_active: would forget 1 stranded removal(s)" in " ".join(counted.stdout.split())
    yml.write_text(removing)
    pushed = personify_json("push", "--project", project)
    assert pushed[0]["warnings"] == []
    assert pushed[0]["counts"]["rows_erased_removed"] == 1 and pushed[0]["error"] is None
    assert "c9@example.org" not in apis.pushed
    with Session(load_project(project_dir)) as session:
        assert session.warehouse.scalar("SELECT count(record_key) FROM destination_state") == 9
        tokens = [str(k) for (k,) in session.warehouse.fetch(
            "SELECT record_key FROM destination_state"
        )]  # fmt: skip
        ring = KeyRing.parse(
            next(
                line.split("=", 1)[1]
                for line in (project_dir / ".env").read_text().splitlines()
                if line.startswith("PERSONIFY_ENCRYPTION_KEYS=")
            )
        )
        keys = {ring.decrypt(t, field=RECORD_KEY) for t in tokens}
        assert "c9@example.org" not in keys and "c1@example.org" in keys

    # another erasure stranded by on_remove: ignore, removed at the CRM by hand: forgotten
    personify_json("privacy", "erase", "c7@example.org", "--project", project)
    yml.write_text(removing.replace("on_remove: delete", "on_remove: ignore"))
    unnamed = personify("push", "--forget-stranded", "--project", project)
    assert unnamed.returncode != 0 and "name the destination" in unnamed.stderr
    (forgot,) = personify_json("push", "--forget-stranded", "crm_active", "--project", project)
    assert (forgot["records"], forgot["forgotten"]) == (1, True)
    assert personify_json("status", "--project", project)["problems"] == []
    audit = personify_json("audit", "--action", "removals_forgotten", "--project", project)
    assert [(e["actor"], e["detail"]["records"]) for e in audit["entries"]] == [("cli", 1)]
