"""``personify alerts check|list`` and ``personify run`` as a user runs them: a broken tracking
plan fires an alert told to a real webhook on loopback once, the run reports it, fixing the file
resolves it; a mistake in ``alerts:`` names the line and key."""

from __future__ import annotations

import json
from pathlib import Path

from personify.scaffold import init_project
from tests.alert_hooks import webhook_receiver
from tests.e2e.cli import personify, personify_json

ALERTS = """
alerts:
  - name: plan_broken
    when: tracking_plan_broken
    notify: [ops]
notifiers:
  ops: {kind: webhook, url: "${ALERT_HOOK_URL}", format: slack}
"""


def _project(tmp_path: Path, alerts: str) -> Path:
    """A scaffolded project with ``alerts`` (and their notifiers) appended to personify.yml."""
    project = tmp_path / "shop"
    init_project(project)
    with (project / "personify.yml").open("a") as f:
        f.write(alerts)
    return project


def test_fire_report_resolve(tmp_path: Path) -> None:
    project = _project(tmp_path, ALERTS)
    plan = project / "tracking-plan" / "Signed Up.json"
    with webhook_receiver() as hook:
        env = {"ALERT_HOOK_URL": hook.url}
        quiet = personify("alerts", "check", "--project", str(project), "--json", env=env)
        assert quiet.returncode == 0, quiet.stderr
        assert json.loads(quiet.stdout)["firing"] == [] and hook.bodies == []

        plan.write_text("{not json")
        fired = personify("alerts", "check", "--project", str(project), "--json", env=env)
        assert fired.returncode == 1, fired.stderr  # something fires: exit 1
        doc = json.loads(fired.stdout)
        assert doc["firing"] == ["plan_broken"]
        assert doc["sent"] == [{"alert": "plan_broken", "notifier": "ops", "kind": "firing"}]
        assert len(hook.bodies) == 1 and "web (1)" in hook.bodies[0]["text"]

        run = personify("run", "--project", str(project), "--json", env=env)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["alerts"]["firing"] == ["plan_broken"]
        assert len(hook.bodies) == 1  # still the same episode: not told again

        (listed,) = personify_json("alerts", "list", "--project", str(project), env=env)
        assert (listed["state"], listed["subjects"]) == ("firing", {"web": 1})
        table = personify("alerts", "list", "--project", str(project), env=env)
        assert "plan_broken" in table.stdout and "firing" in table.stdout
        status = personify_json("status", "--project", str(project), env=env)
        assert [(a["name"], a["state"]) for a in status["alerts"]] == [("plan_broken", "firing")]
        shown = personify("status", "--project", str(project), env=env)
        assert "alert plan_broken firing since" in shown.stdout

        plan.unlink()
        resolved = personify("alerts", "check", "--project", str(project), env=env)
        assert resolved.returncode == 0, resolved.stderr
        assert "notified ops: plan_broken resolved" in resolved.stdout
        assert len(hook.bodies) == 2 and "RESOLVED" in hook.bodies[1]["text"]

        # renamed in personify.yml: the old name's stored state is shown with --all only
        yml = project / "personify.yml"
        yml.write_text(yml.read_text().replace("name: plan_broken", "name: plan_check"))
        (renamed,) = personify_json("alerts", "list", "--project", str(project), env=env)
        assert (renamed["name"], renamed["state"]) == ("plan_check", "ok")
        every = personify_json("alerts", "list", "--all", "--project", str(project), env=env)
        assert [(a["name"], a["state"]) for a in every] == [
            ("plan_check", "ok"),
            ("plan_broken", "removed"),
        ]
        table = personify("alerts", "list", "--all", "--project", str(project), env=env)
        assert "removed" in table.stdout


def test_config_mistakes_are_located(tmp_path: Path) -> None:
    project = _project(tmp_path, ALERTS.replace("notify: [ops]", "notify: [opz]"))
    done = personify(
        "alerts", "list", "--project", str(project), env={"ALERT_HOOK_URL": "http://127.0.0.1:9/"}
    )
    assert done.returncode != 0
    assert "alerts[0].notify[0]: unknown notifier 'opz' (notifiers: ops)" in done.stderr
    missing = personify("alerts", "list", "--project", str(project))
    assert "notifiers.ops.url: environment variable ALERT_HOOK_URL is not set" in missing.stderr


def test_a_notifier_failing_for_a_day_is_given_up_in_words(tmp_path: Path) -> None:
    project = _project(tmp_path, ALERTS.replace("format: slack", "format: json"))
    (project / "tracking-plan" / "Signed Up.json").write_text("{not json")
    with webhook_receiver() as hook:
        hook.statuses = [500] * 100
        env = {"ALERT_HOOK_URL": hook.url}
        first = personify(
            "alerts", "check", "--project", str(project), "--now", "2026-05-04T12:00:00Z", env=env
        )
        assert first.returncode == 1, first.stderr
        assert (
            "notifier ops failed for plan_broken (webhook answered HTTP 500): retried later "
            "(1 min, doubling to 1 h between attempts)"
        ) in first.stdout
        day = personify(
            "alerts", "check", "--project", str(project), "--now", "2026-05-05T13:00:00Z", env=env
        )
        assert day.returncode == 1, day.stderr  # still firing
        assert "ops (1 given up)" in day.stdout  # the table's notify column
        lines = [line for line in day.stdout.splitlines() if line.startswith("notifier ")]
        assert lines == [
            "notifier ops failing for plan_broken for 24 h (webhook answered HTTP 500): given up; "
            "fix the notifier in personify.yml (see `personify alerts list`)"
        ]
        assert "retried later" not in day.stdout
        (listed,) = personify_json("alerts", "list", "--project", str(project), env=env)
        assert [g["notifier"] for g in listed["given_up_notifications"]] == ["ops"]
        assert hook.bodies == []


def test_alerts_removed_altogether_drop_what_was_queued(tmp_path: Path) -> None:
    """``alerts:`` taken out of personify.yml while a notification waits for its retry: the
    next ``alerts check`` — no alert to evaluate — drops it (says so) instead of leaving it
    pending for ever, and ``alerts list --all`` still shows the alert, removed, and what was
    dropped."""
    project = _project(tmp_path, ALERTS)
    (project / "tracking-plan" / "Signed Up.json").write_text("{not json")
    with webhook_receiver() as hook:
        hook.statuses = [500]
        env = {"ALERT_HOOK_URL": hook.url}
        first = personify("alerts", "check", "--project", str(project), env=env)
        assert first.returncode == 1 and "notifier ops failed for plan_broken" in first.stdout
        yml = project / "personify.yml"
        yml.write_text(yml.read_text().replace(ALERTS, ""))
        check = personify("alerts", "check", "--project", str(project), env=env)
        assert check.returncode == 0, check.stderr
        assert (
            "dropped the firing notification of plan_broken for ops: the alert is no longer in "
            "personify.yml (`personify alerts list --all`)"
        ) in check.stdout
        assert "no alerts configured" in check.stdout
        again = personify_json("alerts", "check", "--project", str(project), env=env)
        assert again["dropped"] == [] and hook.bodies == []
        (removed,) = personify_json("alerts", "list", "--all", "--project", str(project), env=env)
        assert (removed["name"], removed["state"]) == ("plan_broken", "removed")
        (dropped,) = removed["dropped_notifications"]
        assert (dropped["notifier"], dropped["error"]) == (
            "ops",
            "alert no longer in personify.yml",
        )
        table = personify("alerts", "list", "--all", "--project", str(project), env=env)
        assert "removed" in table.stdout and "(1 dropped)" in table.stdout
