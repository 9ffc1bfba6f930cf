"""``personify alerts check|list``: evaluate the alerts now, and show their state."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now
from personify.config import ALERT_SIGNALS

if TYPE_CHECKING:
    from personify.alerts import AlertReport

alerts_app = typer.Typer(
    help="Alerts (alerts: and notifiers: in personify.yml): their state, or evaluate them now."
    "\n\nSignals such as a failed sync, a "
    "stale source, quarantine growth or a high complaint rate, told to webhooks (Slack) and "
    "inboxes once when they fire and once when they resolve. They are evaluated after every "
    "`personify run` and on `personify serve`'s schedule (alerts_every). Signals (when:): "
    + ", ".join(ALERT_SIGNALS)
    + ' — README, "Alerts".',
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts", rich_help_panel="Pipeline")


def _table(reports: list[AlertReport], title: str) -> Table:
    table = Table("alert", "signal", "state", "since", "subjects", "notify", title=title)
    for r in reports:
        d = asdict(r)
        since = (
            d["firing_since"]
            or d["pending_since"]
            or (f"resolved {d['resolved_at']}" if d["resolved_at"] else "—")
        )
        subjects = ", ".join(f"{k} ({v})" for k, v in d["subjects"].items()) or "—"
        notify = ", ".join(d["notify"]) or "—"
        if d["failed_notifications"]:
            notify += f" ({len(d['failed_notifications'])} failed, retried)"
        if d["given_up_notifications"]:
            notify += f" ({len(d['given_up_notifications'])} given up)"
        if d["dropped_notifications"]:
            notify += f" ({len(d['dropped_notifications'])} dropped)"
        state = d["state"] + (f" ({d['error']})" if d["error"] else "")
        table.add_row(d["name"], d["signal"], state, since, subjects, notify)
    return table


@alerts_app.command("check")
def check_command(
    project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """Evaluate every alert now and send what is due; exit 1 when one fires.

    Evaluate every alert at --now: read its signal, move its state and each subject's (ok,
    pending while it has not held for its `for:`, firing), notify once when it fires, once per
    subject that fires later ("now also", however often it flaps), again every `repeat:` per
    subject, and once when it resolves, and retry notifications that failed before. The state
    lives in the warehouse: a `personify serve` evaluating at the same moment does not notify
    twice.
    Exit 1 when an alert is firing."""
    from personify.alerts import check_alerts
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        result = check_alerts(session)
    if json:
        emit_json(
            {
                "alerts": [asdict(a) for a in result.alerts],
                "firing": result.firing,
                "sent": result.sent,
                "failed": result.failed,
                "given_up": result.given_up,
                "dropped": result.dropped,
            }
        )
    else:
        out = console()
        out.print(_table(result.alerts, "Alerts"), markup=False)
        for s in result.sent:
            out.print(f"notified {s['notifier']}: {s['alert']} {s['kind']}", markup=False)
        for f in result.failed:
            out.print(
                f"notifier {f['notifier']} failed for {f['alert']} ({f['error']}): retried "
                "later (1 min, doubling to 1 h between attempts)",
                markup=False,
            )
        for f in result.given_up:
            out.print(
                f"notifier {f['notifier']} failing for {f['alert']} for 24 h ({f['error']}): "
                "given up; fix the notifier in personify.yml (see `personify alerts list`)",
                markup=False,
            )
        for f in result.dropped:
            out.print(
                f"dropped the {f['kind']} notification of {f['alert']} for {f['notifier']}: "
                "the alert is no longer in personify.yml (`personify alerts list --all`)",
                markup=False,
            )
        if not result.alerts:
            out.print("no alerts configured (alerts: in personify.yml)", markup=False)
    if result.firing:
        raise typer.Exit(1)


@alerts_app.command("list")
def list_command(
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    all_: bool = typer.Option(
        False,
        "--all",
        help="Also the alerts removed from personify.yml that have stored state (state "
        "removed; their notifications are no longer sent: dropped, counted under notify).",
    ),
) -> None:
    """Each alert's state as last evaluated (changes nothing).

    Ok, pending or firing, since when, for which sources or journeys, when its notifiers were
    last told, notifications that failed (retried after a backoff of 1 min doubling to 1 h,
    with their next attempt), those given up after failing for 24 h, and (--all) those dropped
    because their alert was removed from personify.yml."""
    from personify.alerts import list_alerts
    from personify.session import open_session

    with open_session(project) as session:
        reports = list_alerts(session, removed=all_)
    if json:
        emit_json([asdict(a) for a in reports])
        return
    out = console()
    out.print(_table(reports, "Alerts"), markup=False)
    if not reports:
        out.print("no alerts configured (alerts: in personify.yml)", markup=False)
