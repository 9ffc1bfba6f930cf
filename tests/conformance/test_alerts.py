"""Alerts on every backend: a signal fires once, repeats when asked, resolves once; ``for:``
holds it back; a failing notifier is retried and never fails the check; processes evaluating at
the same moment notify once; messages carry names and counts, never personal data."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.alert_hooks import Hook, webhook_receiver
from tests.conformance.test_profiles import session_on

from personify import clock
from personify.alerts import check_alerts, list_alerts
from personify.alerts.state import DROPPED
from personify.config import Project, parse_config
from personify.session import Session
from personify.sources.schedule import record_run
from personify.warehouse import Warehouse, connect

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
SYNC_FAILING = "  - {name: sync_failing, when: source_failed, notify: [ops_json]}\n"


def project(tmp: Path, wh: Warehouse, alerts: str, hook: Hook, extra: str = "") -> Project:
    text = (
        f"warehouse: {wh.url}\n"
        f"delivery: {{kind: outbox, path: {tmp / 'outbox'}}}\n"
        + (f"alerts:\n{alerts}" if alerts else "")  # ("": the key removed)
        + "notifiers:\n"
        f"  ops_slack: {{kind: webhook, url: '{hook.url}', format: slack}}\n"
        f"  ops_json: {{kind: webhook, url: '{hook.url}'}}\n"
        "  ops_mail: {kind: email, to: [ops@example.org, oncall@example.org]}\n" + extra
    )
    return Project(parse_config(text), tmp, tmp / "personify.yml")


@contextmanager
def alerting(
    wh: Warehouse, tmp: Path, alerts: str, extra: str = ""
) -> Iterator[tuple[Session, Hook]]:
    """A session on :func:`project` (``alerts``, ``extra``) and the webhook receiver its notifiers
    post to, up for the block."""
    with webhook_receiver() as hook:
        yield session_on(wh, project(tmp, wh, alerts, hook, extra)), hook


def check(session: Session, at: datetime) -> list[str]:
    with clock.frozen(at):
        return check_alerts(session, now=at).firing


def sync(wh: Warehouse, source: str, at: datetime, *, error: str | None) -> None:
    with clock.frozen(at):
        record_run(wh, source, started_at=at, seconds=1.0, counts={}, error=error)


def test_fires_once_and_resolves_once(warehouse: Warehouse, tmp_path: Path) -> None:
    with alerting(
        warehouse, tmp_path, "  - {name: sync_failing, when: source_failed, notify: [ops_slack]}\n"
    ) as (s, hook):
        assert check(s, T0) == [] and hook.bodies == []
        sync(warehouse, "crm", T0, error="HTTP 500 from crm for ann@example.org")
        assert check(s, T0 + timedelta(minutes=1)) == ["sync_failing"]
        assert check(s, T0 + timedelta(minutes=2)) == ["sync_failing"]
        assert check(s, T0 + timedelta(hours=9)) == ["sync_failing"]  # no repeat: told once
        assert len(hook.bodies) == 1
        slack = hook.bodies[0]
        assert set(slack) == {"text", "blocks"}
        assert "sync_failing FIRING" in slack["text"] and "crm (failed)" in slack["text"]
        assert [b["type"] for b in slack["blocks"]] == ["section", "section", "context"]
        assert "@" not in json.dumps(slack)  # the source's error (an address) is not quoted

        (listed,) = list_alerts(s)
        assert listed.state == "firing" and listed.subjects == {"crm": "failed"}
        assert listed.firing_since == (T0 + timedelta(minutes=1)).isoformat()

        # another source failing while it fires: told once more, naming it
        sync(warehouse, "shop", T0 + timedelta(hours=9), error="boom")
        assert check(s, T0 + timedelta(hours=9, minutes=1)) == ["sync_failing"]
        assert check(s, T0 + timedelta(hours=9, minutes=2)) == ["sync_failing"]
        assert len(hook.bodies) == 2
        assert "FIRING: source_failed (now also shop)" in hook.bodies[1]["text"]

        sync(warehouse, "shop", T0 + timedelta(hours=10), error=None)
        assert check(s, T0 + timedelta(hours=10)) == ["sync_failing"]  # crm still fails
        sync(warehouse, "crm", T0 + timedelta(hours=10), error=None)
        assert check(s, T0 + timedelta(hours=10, minutes=1)) == []
        assert check(s, T0 + timedelta(hours=10, minutes=2)) == []
        assert len(hook.bodies) == 3
        assert "sync_failing RESOLVED" in hook.bodies[2]["text"]
        assert "crm (failed)" in hook.bodies[2]["text"]  # what it was about
        (listed,) = list_alerts(s)
        assert listed.state == "ok" and listed.firing_since is None
        assert listed.resolved_at == (T0 + timedelta(hours=10, minutes=1)).isoformat()

        # a new episode is a new notification
        sync(warehouse, "crm", T0 + timedelta(hours=11), error="boom")
        assert check(s, T0 + timedelta(hours=11, minutes=1)) == ["sync_failing"]
        assert len(hook.bodies) == 4 and "FIRING: source_failed —" in hook.bodies[3]["text"]


def test_for_and_repeat(warehouse: Warehouse, tmp_path: Path) -> None:
    alerts = (
        "  - name: crm_down\n    when: source_failed\n    only: [crm]\n    for: 15m\n"
        "    repeat: 1h\n    notify: [ops_json]\n"
    )
    with alerting(warehouse, tmp_path, alerts) as (s, hook):
        sync(warehouse, "shop", T0, error="boom")  # not watched (only: [crm])
        assert check(s, T0) == []
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0 + timedelta(minutes=1)) == []
        assert list_alerts(s)[0].state == "pending"
        assert check(s, T0 + timedelta(minutes=10)) == []
        assert hook.bodies == []
        assert check(s, T0 + timedelta(minutes=16)) == ["crm_down"]
        assert check(s, T0 + timedelta(minutes=50)) == ["crm_down"]
        assert len(hook.bodies) == 1
        first = hook.bodies[0]
        assert first["status"] == "firing" and first["repeat"] is False
        assert first["subjects"] == {"crm": "failed"} and first["signal"] == "source_failed"
        assert check(s, T0 + timedelta(minutes=77)) == ["crm_down"]  # 1 h after the first
        assert len(hook.bodies) == 2 and hook.bodies[1]["repeat"] is True
        assert check(s, T0 + timedelta(minutes=80)) == ["crm_down"]
        assert len(hook.bodies) == 2

        # a blip shorter than for: never fires, never resolves
        sync(warehouse, "crm", T0 + timedelta(hours=3), error=None)
        check(s, T0 + timedelta(hours=3))
        sync(warehouse, "crm", T0 + timedelta(hours=4), error="boom")
        check(s, T0 + timedelta(hours=4))
        sync(warehouse, "crm", T0 + timedelta(hours=4, minutes=5), error=None)
        check(s, T0 + timedelta(hours=4, minutes=6))
        assert [b["status"] for b in hook.bodies] == ["firing", "firing", "resolved"]
        assert list_alerts(s)[0].state == "ok"


def test_for_applies_per_subject(warehouse: Warehouse, tmp_path: Path) -> None:
    """A subject that starts holding while the alert fires for another waits for its own
    ``for:`` before it is told ("now also"): a blip of it tells nobody."""
    with webhook_receiver() as hook:
        alerts = "  - {name: sync_failing, when: source_failed, for: 15m, notify: [ops_json]}\n"
        s = session_on(warehouse, project(tmp_path, warehouse, alerts, hook))
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == []
        assert check(s, T0 + timedelta(minutes=15)) == ["sync_failing"]
        sync(warehouse, "shop", T0 + timedelta(minutes=20), error="boom")
        assert check(s, T0 + timedelta(minutes=20)) == ["sync_failing"]
        (listed,) = list_alerts(s)
        assert {n: v["state"] for n, v in listed.subject_states.items()} == {
            "crm": "firing",
            "shop": "pending",
        }
        assert (
            listed.subject_states["shop"]["pending_since"]
            == (T0 + timedelta(minutes=20)).isoformat()
        )
        sync(warehouse, "shop", T0 + timedelta(minutes=21), error=None)  # a blip
        check(s, T0 + timedelta(minutes=21))
        sync(warehouse, "shop", T0 + timedelta(minutes=25), error="boom")
        assert check(s, T0 + timedelta(minutes=30)) == ["sync_failing"]
        assert len(hook.bodies) == 1  # shop has not held for 15 min yet: nobody told
        assert check(s, T0 + timedelta(minutes=45)) == ["sync_failing"]
        assert len(hook.bodies) == 2 and hook.bodies[1]["new_subjects"] == ["shop"]
        assert hook.bodies[1]["subjects"] == {"crm": "failed", "shop": "failed"}


def test_a_flapping_subject_is_told_once_and_repeats_on_its_own_clock(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Within one episode a subject is told once ("now also"), however often it stops and
    starts holding; ``repeat:`` is counted from each subject's own last notification."""
    with webhook_receiver() as hook:
        alerts = "  - {name: sync_failing, when: source_failed, repeat: 1h, notify: [ops_json]}\n"
        s = session_on(warehouse, project(tmp_path, warehouse, alerts, hook))
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0 + timedelta(minutes=1)) == ["sync_failing"]
        sync(warehouse, "shop", T0 + timedelta(minutes=10), error="boom")
        check(s, T0 + timedelta(minutes=10))
        assert [b["new_subjects"] for b in hook.bodies] == [[], ["shop"]]
        for minute in (20, 30, 40):  # shop flaps: recovers, fails again, …
            sync(warehouse, "shop", T0 + timedelta(minutes=minute), error=None)
            check(s, T0 + timedelta(minutes=minute))
            sync(warehouse, "shop", T0 + timedelta(minutes=minute + 5), error="boom")
            assert check(s, T0 + timedelta(minutes=minute + 5)) == ["sync_failing"]
        assert len(hook.bodies) == 2  # not told "now also shop" again
        (listed,) = list_alerts(s)
        assert (
            listed.subject_states["shop"]["last_notified_at"]
            == (T0 + timedelta(minutes=10)).isoformat()
        )

        check(s, T0 + timedelta(minutes=61))  # crm told at 1 min: its repeat is due, not shop's
        assert hook.bodies[2]["repeat"] is True and hook.bodies[2]["subjects"] == {"crm": "failed"}
        check(s, T0 + timedelta(minutes=65))
        assert len(hook.bodies) == 3
        check(s, T0 + timedelta(minutes=70))  # shop told at 10 min
        assert hook.bodies[3]["repeat"] is True and hook.bodies[3]["subjects"] == {"shop": "failed"}

        sync(warehouse, "crm", T0 + timedelta(minutes=80), error=None)
        sync(warehouse, "shop", T0 + timedelta(minutes=80), error=None)
        assert check(s, T0 + timedelta(minutes=80)) == []
        assert hook.bodies[4]["status"] == "resolved"
        assert hook.bodies[4]["subjects"] == {"crm": "failed", "shop": "failed"}
        # a new episode forgets what was told: shop is told again
        sync(warehouse, "shop", T0 + timedelta(minutes=90), error="boom")
        assert check(s, T0 + timedelta(minutes=90)) == ["sync_failing"]
        assert hook.bodies[5]["status"] == "firing"
        assert hook.bodies[5]["subjects"] == {"shop": "failed"}
        assert len(hook.bodies) == 6


def test_a_state_stored_before_subjects_were_tracked_goes_on(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """An alert firing when the warehouse was upgraded (``subject_state`` empty) keeps firing
    without telling again; its subjects take its state."""
    with webhook_receiver() as hook:
        alerts = "  - {name: sync_failing, when: source_failed, notify: [ops_json]}\n"
        s = session_on(warehouse, project(tmp_path, warehouse, alerts, hook))
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        warehouse.execute("UPDATE alert_state SET subject_state = NULL")
        assert list_alerts(s)[0].subject_states["crm"]["state"] == "firing"
        assert check(s, T0 + timedelta(minutes=1)) == ["sync_failing"]
        assert len(hook.bodies) == 1
        sync(warehouse, "shop", T0 + timedelta(minutes=2), error="boom")
        check(s, T0 + timedelta(minutes=2))
        assert [b["new_subjects"] for b in hook.bodies] == [[], ["shop"]]


def test_a_subject_told_in_an_episode_is_not_told_again_after_a_blip_shorter_than_for(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """With ``for:``, a subject already told in this episode that comes back and stops again
    before its ``for:`` is still remembered: holding long enough once more does not tell
    "now also" a second time in the same episode."""
    with webhook_receiver() as hook:
        alerts = "  - {name: sync_failing, when: source_failed, for: 15m, notify: [ops_json]}\n"
        s = session_on(warehouse, project(tmp_path, warehouse, alerts, hook))
        sync(warehouse, "crm", T0, error="boom")
        check(s, T0)
        assert check(s, T0 + timedelta(minutes=15)) == ["sync_failing"]
        sync(warehouse, "shop", T0 + timedelta(minutes=20), error="boom")
        check(s, T0 + timedelta(minutes=20))
        check(s, T0 + timedelta(minutes=35))
        assert [b["new_subjects"] for b in hook.bodies] == [[], ["shop"]]
        for minute, error in ((40, None), (45, "boom"), (50, None), (55, "boom")):
            sync(warehouse, "shop", T0 + timedelta(minutes=minute), error=error)
            assert check(s, T0 + timedelta(minutes=minute)) == ["sync_failing"]
        assert check(s, T0 + timedelta(minutes=75)) == ["sync_failing"]
        assert len(hook.bodies) == 2  # shop was told at 35 min: not "now also" again


def test_failing_notifier_is_retried_and_never_fails(warehouse: Warehouse, tmp_path: Path) -> None:
    with alerting(
        warehouse,
        tmp_path,
        "  - {name: sync_failing, when: source_failed, notify: [ops_json, ops_mail]}\n",
    ) as (s, hook):
        hook.statuses = [500, 503]
        sync(warehouse, "crm", T0, error="boom")
        with clock.frozen(T0):
            first = check_alerts(s, now=T0)
        assert first.firing == ["sync_failing"]
        assert [(f["notifier"], f["error"]) for f in first.failed] == [
            ("ops_json", "webhook answered HTTP 500")
        ]
        assert [x["notifier"] for x in first.sent] == ["ops_mail", "ops_mail"]  # each address
        (listed,) = list_alerts(s)
        assert listed.failed_notifications[0]["attempts"] == 1
        with clock.frozen(T0 + timedelta(minutes=1)):
            second = check_alerts(s, now=T0 + timedelta(minutes=1))
        assert second.failed[0]["error"] == "webhook answered HTTP 503" and second.sent == []
        (waiting,) = list_alerts(s)[0].failed_notifications
        assert waiting["attempts"] == 2  # backing off: 1 min after the first, 2 after the second
        assert waiting["next_attempt_at"] == (T0 + timedelta(minutes=3)).isoformat()
        with clock.frozen(T0 + timedelta(minutes=2)):
            early = check_alerts(s, now=T0 + timedelta(minutes=2))
        assert early.sent == [] and early.failed == [] and hook.bodies == []
        with clock.frozen(T0 + timedelta(minutes=3)):
            third = check_alerts(s, now=T0 + timedelta(minutes=3))
        assert [x["notifier"] for x in third.sent] == ["ops_json"] and third.failed == []
        assert len(hook.bodies) == 1 and hook.bodies[0]["alert"] == "sync_failing"
        assert list_alerts(s)[0].failed_notifications == []
        # the email went through the project's delivery (the outbox), once per address
        mails = sorted((tmp_path / "outbox").glob("*.eml"))
        assert len(mails) == 2
        text = mails[0].read_text()
        assert "Subject: [personify] alert sync_failing FIRING: source_failed" in text
        assert "crm (failed)" in text
        with clock.frozen(T0 + timedelta(minutes=4)):
            check_alerts(s, now=T0 + timedelta(minutes=4))
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2

        # an unreachable webhook is a failure too, reported without its URL
        hook_url = hook.url
    sync(warehouse, "crm", T0 + timedelta(hours=1), error=None)
    with clock.frozen(T0 + timedelta(hours=1)):
        gone = check_alerts(s, now=T0 + timedelta(hours=1))
    assert gone.firing == []
    assert [f["error"] for f in gone.failed] == ["webhook unreachable (ConnectError)"]
    assert hook_url not in json.dumps(gone.failed)


def test_failing_notifier_backs_off_then_gives_up(warehouse: Warehouse, tmp_path: Path) -> None:
    with alerting(warehouse, tmp_path, SYNC_FAILING) as (s, hook):
        hook.statuses = [500] * 100
        sync(warehouse, "crm", T0, error="boom")
        tried: list[int] = []  # the minutes at which the webhook was tried
        minute = 0
        while minute <= 26 * 60:
            at = T0 + timedelta(minutes=minute)
            with clock.frozen(at):
                result = check_alerts(s, now=at)
            assert result.firing == ["sync_failing"] and result.sent == []
            if result.failed:
                tried.append(minute)
            if result.given_up:
                assert minute >= 24 * 60
                assert [(g["notifier"], g["error"]) for g in result.given_up] == [
                    ("ops_json", "webhook answered HTTP 500")
                ]
                break
            minute += 1 if minute < 130 else 10  # (each minute would be slow)
        else:
            raise AssertionError("never given up")
        # 1 min after the first failure, doubling: 0, 1, 3, 7, 15, 31, 63, then every hour
        assert tried[:8] == [0, 1, 3, 7, 15, 31, 63, 123]
        assert all(60 <= b - a < 70 for a, b in zip(tried[7:], tried[8:], strict=False))
        assert tried[-1] < 24 * 60 <= minute
        attempts = len(tried)
        assert 100 - len(hook.statuses) == attempts  # each attempt one POST, no more
        (listed,) = list_alerts(s)
        assert listed.failed_notifications == []
        (given,) = listed.given_up_notifications
        assert given["attempts"] == attempts and given["error"] == "webhook answered HTTP 500"
        assert given["created_at"] == T0.isoformat()
        # given up: never tried again, even with the webhook back
        hook.statuses = []
        later = T0 + timedelta(hours=30)
        with clock.frozen(later):
            again = check_alerts(s, now=later)
        assert again.sent == again.failed == again.given_up == [] and hook.bodies == []
        # the alert's next change is told
        sync(warehouse, "crm", later, error=None)
        with clock.frozen(later + timedelta(minutes=1)):
            resolved = check_alerts(s, now=later + timedelta(minutes=1))
        assert [x["kind"] for x in resolved.sent] == ["resolved"]
        assert [b["status"] for b in hook.bodies] == ["resolved"]


def test_removed_alert_is_not_notified(warehouse: Warehouse, tmp_path: Path) -> None:
    both = SYNC_FAILING + "  - {name: quarantined, when: quarantine_growth, notify: [ops_json]}\n"
    with alerting(warehouse, tmp_path, both) as (s, hook):
        hook.statuses = [500]
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        assert len(list_alerts(s)[0].failed_notifications) == 1
        # sync_failing removed from personify.yml while its notification waits to be retried
        only = "  - {name: quarantined, when: quarantine_growth, notify: [ops_json]}\n"
        s = session_on(warehouse, project(tmp_path, warehouse, only, hook))
        sync(warehouse, "crm", T0 + timedelta(hours=1), error=None)  # would resolve it
        with clock.frozen(T0 + timedelta(hours=1)):
            result = check_alerts(s, now=T0 + timedelta(hours=1))
        assert result.sent == result.failed == [] and hook.bodies == []
        assert [a.name for a in result.alerts] == ["quarantined"]
        assert [a.name for a in list_alerts(s)] == ["quarantined"]
        listed = {a.name: a for a in list_alerts(s, removed=True)}
        assert listed["sync_failing"].state == "removed"
        assert listed["sync_failing"].subjects == {"crm": "failed"}  # as last evaluated
        assert listed["sync_failing"].failed_notifications == []
        assert listed["quarantined"].state == "ok"
        kept = warehouse.fetch(
            "SELECT status, error FROM alert_notifications WHERE alert = 'sync_failing'"
        )
        assert kept == [("dropped", "alert no longer in personify.yml")]
        # put back: it is evaluated again, and the dropped notification stays unsent
        s = session_on(warehouse, project(tmp_path, warehouse, both, hook))
        assert check(s, T0 + timedelta(hours=2)) == []
        assert [b["status"] for b in hook.bodies] == ["resolved"]


def test_no_alert_left_still_drops_what_was_queued(warehouse: Warehouse, tmp_path: Path) -> None:
    """``alerts:`` removed from personify.yml altogether, while one alert's notification waits
    for its retry and another's was queued but never tried (its process stopped before sending):
    the next run (or ``alerts check``) with no alert to evaluate still settles both — dropped,
    with the reason, never sent — and ``alerts list --all`` shows them."""
    from personify import pipeline
    from personify.alerts.state import _transition

    both = SYNC_FAILING + "  - {name: quarantined, when: quarantine_growth, notify: [ops_json]}\n"
    with alerting(warehouse, tmp_path, both) as (s, hook):
        hook.statuses = [500]
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        quarantined = s.project.config.alerts[1]
        _transition(s, quarantined, {"web": 3}, T0)  # queued, not sent (no delivery after it)
        queued = warehouse.fetch("SELECT alert, status FROM alert_notifications ORDER BY alert")
        assert [tuple(r) for r in queued] == [
            ("quarantined", "pending"),
            ("sync_failing", "failed"),
        ]

        none = session_on(warehouse, project(tmp_path, warehouse, "", hook))
        assert not none.project.config.alerts
        with clock.frozen(T0 + timedelta(hours=1)):
            report = pipeline.run(none, stages=())
        assert report.alerts is None and hook.bodies == []  # nothing sent, nothing evaluated
        kept = warehouse.fetch(
            "SELECT alert, status, error FROM alert_notifications ORDER BY alert"
        )
        assert [tuple(r) for r in kept] == [
            ("quarantined", "dropped", DROPPED),
            ("sync_failing", "dropped", DROPPED),
        ]
        with clock.frozen(T0 + timedelta(hours=2)):
            again = check_alerts(none, now=T0 + timedelta(hours=2))
        assert again.alerts == [] and again.dropped == [] and hook.bodies == []  # once

        assert list_alerts(none) == []
        listed = {a.name: a for a in list_alerts(none, removed=True)}
        assert {n: a.state for n, a in listed.items()} == {
            "quarantined": "removed",
            "sync_failing": "removed",
        }
        (dropped,) = listed["sync_failing"].dropped_notifications
        assert (dropped["kind"], dropped["error"], dropped["attempts"]) == ("firing", DROPPED, 1)
        assert dropped["created_at"] == T0.isoformat()
        assert [d["attempts"] for d in listed["quarantined"].dropped_notifications] == [0]


def test_an_alerts_check_with_no_alert_reports_what_it_dropped(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    with alerting(warehouse, tmp_path, SYNC_FAILING) as (s, hook):
        hook.statuses = [500]
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        none = session_on(warehouse, project(tmp_path, warehouse, "", hook))
        with clock.frozen(T0 + timedelta(minutes=5)):
            result = check_alerts(none, now=T0 + timedelta(minutes=5))
        assert result.dropped == [
            {"alert": "sync_failing", "notifier": "ops_json", "kind": "firing", "error": DROPPED}
        ]
        assert result.sent == result.failed == [] and hook.bodies == []


def test_serve_with_no_alert_left_drops_what_was_queued(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """``personify serve`` started once ``alerts:`` is gone (no evaluation on its schedule):
    its scheduler settles what was queued for the removed alerts when it starts."""
    from personify.server.scheduler import scheduled_syncs

    with alerting(warehouse, tmp_path, SYNC_FAILING) as (s, hook):
        hook.statuses = [500]
        sync(warehouse, "crm", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        none = session_on(warehouse, project(tmp_path, warehouse, "", hook))
        with scheduled_syncs(none) as scheduler:
            assert scheduler.alerts_every is None
        kept = warehouse.fetch("SELECT status, error FROM alert_notifications")
        assert [tuple(r) for r in kept] == [("dropped", DROPPED)] and hook.bodies == []


def test_quarantine_growth_counts_without_personal_data(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    with alerting(
        warehouse,
        tmp_path,
        "  - {name: quarantine, when: quarantine_growth, over: 2, notify: [ops_json]}\n",
    ) as (s, hook):
        for i in range(5):
            warehouse.execute(
                "INSERT INTO quarantine (id, source, received_at, reason, detail, payload) "
                "VALUES (?, ?, ?, 'invalid_email', 'email: not an address', ?)",
                [f"q{i}", "web" if i < 3 else "shop", T0 - timedelta(minutes=i), "bob@x.org"],
            )
        assert check(s, T0) == ["quarantine"]
        (body,) = hook.bodies
        assert body["subjects"] == {"web": 3}  # shop's 2 are not over 2
        assert "bob" not in json.dumps(body) and "@" not in json.dumps(body)
        assert check(s, T0 + timedelta(hours=2)) == []  # none in the last hour: resolved
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]


def test_processes_at_once_notify_once(warehouse: Warehouse, tmp_path: Path) -> None:
    """Several processes (connections) evaluating at the same instant: one firing message."""
    with webhook_receiver() as hook:
        proj = project(tmp_path, warehouse, SYNC_FAILING, hook)
        sync(warehouse, "crm", T0, error="boom")
        if warehouse.scheme == "postgresql":  # other connections: as other processes would
            others = [connect(warehouse.url) for _ in range(3)]
        else:  # one DuckDB file is one process's: its threads race instead
            others = [warehouse] * 3
        results: list[list[str]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(others))

        def evaluate(wh: Warehouse) -> None:
            try:
                barrier.wait()
                results.append(check(session_on(wh, proj), T0 + timedelta(minutes=1)))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=evaluate, args=(wh,)) for wh in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        if warehouse.scheme == "postgresql":
            for wh in others:
                wh.close()
        assert errors == []
        assert len(hook.bodies) == 1
        assert warehouse.scalar("SELECT count(*) FROM alert_notifications") == 1
        assert list_alerts(session_on(warehouse, proj))[0].state == "firing"


def test_serve_evaluates_on_its_schedule(warehouse: Warehouse, tmp_path: Path) -> None:
    """``personify serve``'s scheduler thread evaluates the alerts every ``alerts_every``."""
    import time

    from personify.server.scheduler import scheduled_syncs

    with alerting(warehouse, tmp_path, SYNC_FAILING, extra="alerts_every: 0.2s\n") as (s, hook):
        sync(warehouse, "crm", datetime.now(UTC), error="boom")
        with scheduled_syncs(s) as scheduler:
            deadline = time.monotonic() + 30
            while not hook.bodies and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [b["alert"] for b in hook.bodies] == ["sync_failing"]
            sync(warehouse, "crm", datetime.now(UTC), error=None)
            while len(hook.bodies) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert scheduler.alert_checks >= 2
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]


EVERY_SIGNAL = """\
  - {name: a_source_failed, when: source_failed}
  - {name: a_source_stale, when: source_stale, over: 1h}
  - {name: a_quarantine_growth, when: quarantine_growth}
  - {name: a_run_failed, when: run_failed}
  - {name: a_delivery_failures, when: delivery_failures, over: 1}
  - {name: a_complaint_rate, when: complaint_rate}
  - {name: a_bounce_rate, when: bounce_rate}
  - {name: a_tracking_plan_broken, when: tracking_plan_broken}
  - {name: a_anomaly, when: anomaly}
  - {name: a_quality_flagged, when: quality_flagged}
  - {name: a_reconcile_flagged, when: reconcile_flagged}
  - {name: a_removals_stranded, when: removals_stranded}
  - {name: a_forwarding_lag, when: forwarding_lag, over: 1m}
"""


def test_every_signal_reads_on_this_backend(warehouse: Warehouse, tmp_path: Path) -> None:
    """Each signal's SQL runs here; quiet on an empty warehouse, and holds on what makes it."""
    from personify.config import ALERT_SIGNALS

    with webhook_receiver() as hook:
        crm = "sources:\n  - {name: crm, kind: file, path: crm.csv, table: customers}\n"
        proj = project(tmp_path, warehouse, EVERY_SIGNAL, hook, extra=crm)
        assert {a.when for a in proj.config.alerts} == set(ALERT_SIGNALS)
        s = session_on(warehouse, proj)
        with clock.frozen(T0):
            quiet = check_alerts(s, now=T0)
        assert [(a.name, a.error) for a in quiet.alerts if a.error] == []
        assert quiet.firing == []

        sync(warehouse, "crm", T0 - timedelta(hours=3), error=None)  # 3 h ago: stale over 1 h
        warehouse.execute(
            "INSERT INTO pipeline_runs (run_id, started_at, finished_at, now, status, stats) "
            "VALUES ('r1', ?, ?, ?, 'failed', ?)",
            [T0, T0, T0, json.dumps({"audiences": {"problems": ["segment vip: ann@x.org"]}})],
        )
        for i in range(3):  # 3 failed in the last hour: over 1
            warehouse.execute(
                "INSERT INTO messages (idempotency_key, customer_id, journey, template, status, "
                "decided_at) VALUES (?, 'c1', 'welcome', 'welcome', 'failed', ?)",
                [f"k{i}", T0 - timedelta(minutes=5)],
            )
        warehouse.execute(
            "INSERT INTO quality_violations (checked_at, table_name, rule, action, violations) "
            "VALUES (?, 'customers', 'customers.email.format', 'flag', 4)",
            [T0],
        )
        for h in ("h1", "h2"):  # erasures' removals left at a destination no longer configured
            warehouse.execute(
                "INSERT INTO destination_state (destination, key_hash, row_hash, status, "
                "pushed_at, record_key) VALUES ('old_crm', ?, '', 'erased', ?, 'token')",
                [h, T0],
            )
        with clock.frozen(T0):
            loud = check_alerts(s, now=T0)
        subjects = {a.name: a.subjects for a in loud.alerts}
        assert subjects["a_removals_stranded"] == {"destination:old_crm": 2}
        assert subjects["a_source_stale"] == {"crm": 3 * 3600}
        assert subjects["a_run_failed"] == {"audiences": 1}  # counted, never quoted
        assert subjects["a_delivery_failures"] == {"welcome": 3}
        assert subjects["a_quality_flagged"] == {"customers.email.format": 4}
        assert sorted(loud.firing) == [
            "a_delivery_failures",
            "a_quality_flagged",
            "a_removals_stranded",
            "a_run_failed",
            "a_source_stale",
        ]
        assert hook.bodies == []  # no notifiers: state only


# ------------------------------------------------------- the signals fed the way the product does
def _sends(wh: Warehouse, keys: range) -> None:
    """Messages of journey ``cart`` sent at ``SENT`` to customers ``c-<i>``."""
    from tests.conformance.test_engagement import SENT, _load

    _load(
        wh,
        "messages",
        [
            {
                "idempotency_key": f"m-{i}",
                "customer_id": f"c-{i}",
                "journey": "cart",
                "step": "first",
                "template": "abandoned_cart",
                "status": "sent",
                "decided_at": SENT,
                "sent_at": SENT,
            }
            for i in keys
        ],
    )


def _esp_webhook(session: Session, events: list[dict[str, object]]) -> None:
    """A SendGrid Event Webhook body, applied as the server's ESP webhook applies it:
    suppressions (bounces, complaints) and engagement events (complaints)."""
    from personify.delivery.events import parse
    from personify.delivery.suppress import apply_events
    from personify.engagement.esp import parse_touches, record_touches

    body = json.dumps(events).encode()
    received, found = parse("sendgrid", body)
    apply_events(session.warehouse, session.project, "sendgrid", received, found)
    record_touches(session.warehouse, session.project, "sendgrid", parse_touches("sendgrid", body))


def test_complaint_and_bounce_rates_fire_and_resolve(warehouse: Warehouse, tmp_path: Path) -> None:
    """Complaints and bounces reported by the ESP webhook: a rate over its ceiling fires, more
    deliveries bringing it down to the ceiling (not over) resolve it."""
    from tests.conformance.test_engagement import SENT
    from tests.conformance.test_engagement_esp import _sendgrid

    alerts = (
        "  - {name: complaints, when: complaint_rate, over: 0.05, notify: [ops_json]}\n"
        "  - {name: complaints_default, when: complaint_rate}\n"  # engagement.max_complaint_rate
        "  - {name: bounces, when: bounce_rate, notify: [ops_json]}\n"  # over 0.05 by default
    )
    with alerting(warehouse, tmp_path, alerts, extra="signing_key: alert-test-key\n") as (s, hook):
        _sends(warehouse, range(10))
        at = SENT + timedelta(hours=1)
        assert check(s, at) == [] and hook.bodies == []  # 10 sent and delivered: quiet

        with clock.frozen(SENT + timedelta(minutes=10)):
            _esp_webhook(
                s,
                [
                    _sendgrid("spamreport", 5, personify_key="m-1", customer_id="c-1"),
                    _sendgrid("bounce", 6, personify_key="m-2", customer_id="c-2"),
                ],
            )
        assert sorted(check(s, at + timedelta(minutes=1))) == [
            "bounces",
            "complaints",
            "complaints_default",
        ]
        fired = {b["alert"]: b for b in hook.bodies}
        assert set(fired) == {"complaints", "bounces"}
        assert fired["complaints"]["status"] == "firing"
        assert fired["complaints"]["subjects"] == {"cart": round(1 / 9, 6)}  # of 9 delivered
        assert fired["bounces"]["subjects"] == {"cart": 0.1}  # 1 of 10 sent not delivered
        assert "@" not in json.dumps(hook.bodies)  # the addresses are not quoted
        # the same webhook delivered again (ESPs retry): nothing doubles, nothing new is told
        with clock.frozen(SENT + timedelta(minutes=20)):
            _esp_webhook(
                s,
                [
                    _sendgrid("spamreport", 5, personify_key="m-1", customer_id="c-1"),
                    _sendgrid("bounce", 6, personify_key="m-2", customer_id="c-2"),
                ],
            )
        assert len(check(s, at + timedelta(minutes=2))) == 3 and len(hook.bodies) == 2
        assert {a.name: a.subjects for a in list_alerts(s)}["complaints"] == {
            "cart": round(1 / 9, 6)
        }

        _sends(warehouse, range(10, 21))  # 21 sent: 1 complaint of 20 delivered, 1 bounce in 21
        later = check(s, at + timedelta(minutes=3))
        assert later == ["complaints_default"]  # 1/20 is still over 0.003
        told = sorted((b["alert"], b["status"]) for b in hook.bodies[2:])
        assert told == [("bounces", "resolved"), ("complaints", "resolved")]
        states = {a.name: (a.state, a.subjects) for a in list_alerts(s)}
        assert states["complaints"] == ("ok", {})  # 1/20 = 0.05: the ceiling, not over it
        assert states["bounces"] == ("ok", {})


def test_bounce_rate_ceiling_is_engagement_max_bounce_rate(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """The ``bounce_rate`` alert's default ceiling is ``engagement.max_bounce_rate``; an alert's
    ``over:`` still sets its own."""
    from tests.conformance.test_engagement import SENT
    from tests.conformance.test_engagement_esp import _sendgrid

    alerts = (
        "  - {name: bounces, when: bounce_rate}\n"
        "  - {name: bounces_strict, when: bounce_rate, over: 0.05}\n"
    )
    with webhook_receiver() as hook:
        s = session_on(
            warehouse,
            project(
                tmp_path,
                warehouse,
                alerts,
                hook,
                extra="signing_key: alert-test-key\nengagement:\n  max_bounce_rate: 0.15\n",
            ),
        )
        _sends(warehouse, range(10))
        with clock.frozen(SENT + timedelta(minutes=10)):
            _esp_webhook(s, [_sendgrid("bounce", 6, personify_key="m-2", customer_id="c-2")])
        at = SENT + timedelta(hours=1)
        assert check(s, at) == ["bounces_strict"]  # 1 of 10: over 0.05, not over 0.15
        with clock.frozen(SENT + timedelta(minutes=20)):
            _esp_webhook(s, [_sendgrid("bounce", 7, personify_key="m-3", customer_id="c-3")])
        assert sorted(check(s, at + timedelta(minutes=1))) == ["bounces", "bounces_strict"]


def test_anomaly_fires_and_resolves(warehouse: Warehouse, tmp_path: Path) -> None:
    """A drop in a source's events (quality anomaly detection) fires; the late events making
    the day's volume usual again resolve it."""
    import pyarrow as pa
    from tests.conformance.test_quality_anomalies import NOW, events

    from personify.warehouse.schema import EVENTS

    odd = "  - {name: odd, when: anomaly, notify: [ops_json]}\n"
    with alerting(warehouse, tmp_path, odd) as (s, hook):
        events(warehouse, "web", "Product Viewed", [20, 20, 20, 20, 20, 20, 20, 20])  # steady
        assert check(s, NOW) == [] and hook.bodies == []
        events(warehouse, "web", "Order Completed", [5, 20, 20, 20, 20, 20, 20, 20])  # low
        assert check(s, NOW + timedelta(minutes=1)) == ["odd"]
        (body,) = hook.bodies
        assert body["status"] == "firing" and body["signal"] == "anomaly"
        assert list(body["subjects"].values()) == ["low"]
        (subject,) = body["subjects"]
        assert subject.startswith("web/") and subject.endswith("/Order Completed")
        assert check(s, NOW + timedelta(minutes=2)) == ["odd"] and len(hook.bodies) == 1
        # the day's missing orders arrive late: the last 24 h are back to the usual 20
        late = [NOW - timedelta(hours=2, minutes=i) for i in range(15)]
        stamps = pa.array(late, pa.timestamp("us", tz="UTC"))
        warehouse.load(
            EVENTS,
            pa.table(
                {
                    "message_id": [f"late-{i}" for i in range(15)],
                    "type": ["track"] * 15,
                    "event": ["Order Completed"] * 15,
                    "timestamp": stamps,
                    "received_at": stamps,
                    "source": ["web"] * 15,
                }
            ),
        )
        assert check(s, NOW + timedelta(minutes=3)) == []
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]
        assert hook.bodies[1]["subjects"] == body["subjects"]  # what it was about


def test_reconcile_flagged_fires_and_resolves(warehouse: Warehouse, tmp_path: Path) -> None:
    """A reconciliation run finding more discrepancies than its threshold fires; the repaired
    run after it resolves."""
    from personify.quality import reconcile
    from personify.sources import sync_sources

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders-1.csv").write_text(
        "order_id,email,total,created_at\n"
        "a1,a@example.org,10,2026-03-01T10:00:00Z\n"
        "a2,b@example.org,12,2026-03-01T11:00:00Z\n"
        "a3,c@example.org,14,2026-03-01T12:00:00Z\n"
    )
    extra = (
        "sources:\n  - {name: shop, kind: file, path: data/orders-*.csv, table: orders}\n"
        "quality: {reconcile: {threshold: 1}}\n"
    )
    alert = "  - {name: drift, when: reconcile_flagged, notify: [ops_json]}\n"
    with alerting(warehouse, tmp_path, alert, extra=extra) as (s, hook):
        sync_sources(s)
        assert reconcile(s).status == "clean"
        assert check(s, T0) == [] and hook.bodies == []
        warehouse.execute("DELETE FROM orders WHERE order_id = 'a1'")
        assert reconcile(s).flagged is False  # 1 discrepancy: not over the threshold of 1
        assert check(s, T0 + timedelta(minutes=1)) == []
        warehouse.execute("UPDATE orders SET total = 99 WHERE order_id = 'a2'")
        assert reconcile(s).flagged  # 2 over 1
        assert check(s, T0 + timedelta(minutes=2)) == ["drift"]
        (body,) = hook.bodies
        assert body["status"] == "firing" and body["subjects"] == {"reconciliation": 2}
        assert "@" not in json.dumps(body)
        assert reconcile(s, repair=True).repaired == 2
        assert reconcile(s).status == "clean"
        assert check(s, T0 + timedelta(minutes=3)) == []
        assert [b["status"] for b in hook.bodies] == ["firing", "resolved"]


def test_a_subject_that_stops_while_others_fire_is_told_in_the_next_notification(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """crm and shop fail; shop recovers while crm keeps failing. shop's recovery is told as
    "resolved for shop" in the episode's next notification (a repeat here), once, to every
    notifier — JSON, Slack and email over SMTP; holding again afterwards is told again ("now
    also"); and the resolution names what resolved earlier that nobody was told yet."""
    from tests.unit.delivery.servers import Handler, smtp_server

    handler = Handler()
    with smtp_server(handler=handler) as smtp, webhook_receiver() as hook:
        alerts = (
            "  - {name: sync_failing, when: source_failed, repeat: 1h, "
            "notify: [ops_json, ops_slack, ops_mail]}\n"
        )
        config = parse_config(
            f"warehouse: {warehouse.url}\n"
            f"delivery: {{kind: smtp, host: 127.0.0.1, port: {smtp.port}, tls: none}}\n"
            f"alerts:\n{alerts}"
            "notifiers:\n"
            f"  ops_slack: {{kind: webhook, url: '{hook.url}', format: slack}}\n"
            f"  ops_json: {{kind: webhook, url: '{hook.url}'}}\n"
            "  ops_mail: {kind: email, to: [ops@example.org]}\n"
            "email: {from_address: alerts@shop.example}\n"
        )
        s = session_on(warehouse, Project(config, tmp_path, tmp_path / "personify.yml"))

        def bodies(kind: str) -> list[dict[str, object]]:
            return [b for b in hook.bodies if ("blocks" in b) == (kind == "slack")]

        sync(warehouse, "crm", T0, error="boom")
        sync(warehouse, "shop", T0, error="boom")
        assert check(s, T0) == ["sync_failing"]
        sync(warehouse, "shop", T0 + timedelta(minutes=10), error=None)  # shop recovers
        assert check(s, T0 + timedelta(minutes=10)) == ["sync_failing"]
        assert len(bodies("json")) == 1  # no notification of its own
        (listed,) = list_alerts(s)
        assert listed.subject_states["shop"]["state"] == "ok"
        assert (
            listed.subject_states["shop"]["stopped_at"] == (T0 + timedelta(minutes=10)).isoformat()
        )

        assert check(s, T0 + timedelta(hours=1)) == ["sync_failing"]  # crm's repeat is due
        repeat = bodies("json")[1]
        assert repeat["repeat"] is True and repeat["subjects"] == {"crm": "failed"}
        assert repeat["resolved_subjects"] == {"shop": (T0 + timedelta(minutes=10)).isoformat()}
        slack = bodies("slack")[1]
        assert slack["text"].startswith(
            "[personify] alert sync_failing STILL FIRING: source_failed (resolved for shop)"
        )
        assert "*resolved for:* shop (at 2026-05-04T12:10:00+00:00)" in json.dumps(
            slack["blocks"]
        ).replace("\\n", "\n")
        mail = handler.received[-1].message
        assert mail["Subject"] == (
            "[personify] alert sync_failing STILL FIRING: source_failed (resolved for shop)"
        )
        plain = mail.get_body(("plain",))
        assert plain is not None
        assert "resolved for: shop (at 2026-05-04T12:10:00+00:00)" in plain.get_content()

        assert check(s, T0 + timedelta(hours=1, minutes=5)) == ["sync_failing"]
        assert len(bodies("json")) == 2  # told once
        sync(warehouse, "shop", T0 + timedelta(hours=1, minutes=10), error="boom")
        assert check(s, T0 + timedelta(hours=1, minutes=10)) == ["sync_failing"]
        grown = bodies("json")[2]  # told it recovered: failing again is news
        assert grown["new_subjects"] == ["shop"] and grown["resolved_subjects"] == {}

        # shop stops again, then crm: the resolution says both
        sync(warehouse, "shop", T0 + timedelta(hours=1, minutes=20), error=None)
        check(s, T0 + timedelta(hours=1, minutes=20))
        sync(warehouse, "crm", T0 + timedelta(hours=1, minutes=30), error=None)
        assert check(s, T0 + timedelta(hours=1, minutes=30)) == []
        resolved = bodies("json")[3]
        assert resolved["status"] == "resolved" and resolved["subjects"] == {"crm": "failed"}
        assert resolved["resolved_subjects"] == {
            "shop": (T0 + timedelta(hours=1, minutes=20)).isoformat()
        }
        assert len(bodies("json")) == 4 and len(bodies("slack")) == 4
        assert len(handler.received) == 4
        last = handler.received[-1].message.get_body(("plain",))
        assert last is not None and "also resolved for: shop" in last.get_content()
