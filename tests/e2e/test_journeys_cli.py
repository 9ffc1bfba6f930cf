"""Journeys through the console script: the demo ends with emails; reruns send nothing new."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

import pytest

from tests.e2e.cli import DEMO_TIMEOUT, personify, personify_json

NOW = "2026-01-31T09:00:00Z"


@pytest.mark.timeout(1200)  # hang guards: at load 16 this test passed the suite's 300 s default
def test_demo_ends_with_both_journeys_emails_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    project = tmp_path / "demo"
    summary = personify_json(
        "demo", str(project), "--customers", "1000", "--now", NOW, timeout=DEMO_TIMEOUT
    )
    emails = summary["emails"]
    by_journey = emails["by_journey"]
    assert by_journey["abandoned_cart"]["sent"] >= 5
    assert by_journey["re_engagement"]["sent"] >= 5
    outbox = project / "outbox"
    everything = sorted(outbox.glob("*.eml"))
    # the demo's alert (README, "Quickstart") emails ops about the world's dirt: not a journey's
    files = [f for f in everything if not f.name.startswith("alert-")]
    assert len(files) == emails["sent"] and len(everything) == len(files) + 1

    example = Path(emails["example"])
    assert example.is_file() and example.parent == outbox
    assert example.name.startswith("abandoned_cart")
    message = email.message_from_bytes(example.read_bytes(), policy=policy.default)
    assert message.is_multipart() and message["List-Unsubscribe"]
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "You might also like" in text.get_content()
    index = [json.loads(line) for line in (outbox / "index.jsonl").read_text().splitlines()]
    assert len(index) == len(everything) and all("@" not in json.dumps(e) for e in index)

    again = personify_json("run", "--project", str(project), "--now", NOW)
    stages = {s["name"]: s["counts"] for s in again["stages"]}
    assert stages["journeys"]["entered"] == 0 and stages["journeys"]["decided"] == 0
    assert stages["delivery"]["sent"] == 0
    assert sorted(outbox.glob("*.eml")) == everything  # the alert told once, too

    text = personify("run", "--project", str(project), "--now", NOW)
    assert text.returncode == 0, text.stderr
    assert "Emails: 0 sent" in text.stdout

    listed = personify_json("journeys", "list", "--project", str(project))["journeys"]
    cart = next(j for j in listed if j["name"] == "abandoned_cart")
    assert cart["messages"]["sent"] == by_journey["abandoned_cart"]["sent"]
    assert cart["instances"].get("goal", 0) > 0  # carts ordered within the hour left early
    assert cart["steps"] == ["step1: wait 1h", "remind: send abandoned_cart"]
    capped = personify_json(
        "sql",
        "SELECT customer_id FROM messages WHERE status = 'skipped_frequency' LIMIT 1",
        "--project",
        str(project),
    )["rows"]
    if capped:
        path = personify_json(
            "journeys", "show", capped[0]["customer_id"], "--project", str(project)
        )
        reasons = [m["error"] for m in path["messages"] if m["status"] == "skipped_frequency"]
        assert reasons == ["frequency cap: 1 per 24h"]
        assert any(m["status"] == "sent" for m in path["messages"])

    shown = personify("demo", str(project), "--customers", "1000", timeout=DEMO_TIMEOUT)
    assert shown.returncode == 0, shown.stderr
    assert "Emails (journeys)" in shown.stdout and "abandoned_cart" in shown.stdout
    assert "Open one" in shown.stdout and ".eml" in shown.stdout


def test_a_bad_journey_file_stops_the_run_naming_file_line_and_key(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert personify("init", str(project)).returncode == 0
    (project / "journeys" / "broken.yml").write_text(
        "trigger:\n  event: Product Added\nsteps:\n  - wait: soon\n", encoding="utf-8"
    )
    done = personify("run", "--project", str(project), "--now", NOW)
    assert done.returncode == 2
    assert "journeys/broken.yml:4: steps[0].wait" in done.stderr
    assert "not a duration" in done.stderr


def test_journeys_check_reads_every_language_version_of_the_templates(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert personify("init", str(project)).returncode == 0
    p = ("--project", str(project))
    templates = project / "templates"
    (templates / "abandoned_cart.fr.liquid").write_text(
        "---\nsubject: Votre panier\n---\n<p>Bonjour</p>\n{% render 'signature' %}\n"
    )
    (templates / "partials").mkdir()
    (templates / "partials" / "signature.liquid").write_text("<p>L'équipe</p>\n")
    done = personify_json("journeys", "check", *p)
    checked = {r["journey"]: r["templates"] for r in done["journeys"]}
    assert checked["abandoned_cart"] == ["abandoned_cart.liquid", "abandoned_cart.fr.liquid"]

    # a broken partial of the French version fails the check (exit 2) and the run (exit 1,
    # after the other journeys ran), naming both files; status shows it
    (templates / "partials" / "signature.liquid").write_text("<p>\n{% if %}</p>\n")
    for args, code in ((("journeys", "check"), 2), (("run", "--now", NOW), 1)):
        done = personify(*args, *p)
        assert done.returncode == code, done.stderr
        said = " ".join(done.stderr.split())
        assert "journeys/abandoned_cart.yml:" in said and "steps[" in said
        assert "template partials/signature.liquid:2:" in said
    done = personify("run", "--now", NOW, *p, "--json")
    assert done.returncode == 1, done.stderr
    ran = json.loads(done.stdout)
    (stage,) = [s for s in ran["stages"] if s["name"] == "journeys"]
    assert stage["counts"]["journeys_failed"] == 1 and "re_engagement.decided" in stage["counts"]
    (error,) = ran["errors"]
    assert "journeys/abandoned_cart.yml:" in error and "partials/signature.liquid:2:" in error
    assert [s["name"] for s in ran["stages"]][-2:] == ["delivery", "destinations"]
    assert personify_json("status", *p)["last_run"]["errors"] == [error]
    assert "every language version" in " ".join(
        personify("journeys", "check", "--help").stdout.split()
    )


def test_journeys_check_names_a_date_zone_that_is_none(tmp_path: Path) -> None:
    project = tmp_path / "p"
    assert personify("init", str(project)).returncode == 0
    (project / "templates" / "abandoned_cart.fr.liquid").write_text(
        "---\nsubject: Votre panier\n---\n<p>Bonjour</p>\n"
        "<p>{{ discount.expires_at | date: '%d %B', 'Europe/Pariss' }}</p>\n"
    )
    done = personify("journeys", "check", "--project", str(project))
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "journeys/abandoned_cart.yml:" in said and "steps[" in said
    assert "template abandoned_cart.fr.liquid:5: date: 'Europe/Pariss' is not a time zone" in said
    assert "IANA" in said


def test_run_help_describes_journeys_and_delivery() -> None:
    done = personify("run", "--help")
    assert done.returncode == 0
    for words in ("journeys", "delivery", "idempotency key", "twice"):
        assert words in done.stdout
