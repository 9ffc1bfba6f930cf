"""``personify init`` and ``personify status``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from personify.cli.app import (
    JsonOpt,
    NewProjectOpt,
    NowOpt,
    ProjectOpt,
    app,
    console,
    emit_json,
    make_folder,
    new_project_folder,
    pin_now,
)


@app.command("init", rich_help_panel="Start")
def init_command(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder for the new project.", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the scaffold's files.")] = False,
    project: NewProjectOpt = None,
) -> None:
    """Scaffold a project: personify.yml, segments/, rules/, templates/, tracking-plan/.

    Writes .env with a fresh write key, admin token and signing key (kept out of git).
    """
    from personify.scaffold import init_project

    directory = new_project_folder(directory, project, None)

    make_folder(directory, param_hint="DIRECTORY")
    init_project(directory, force=force)
    out = console()
    out.print(f"Created a Personify project in [bold]{directory}[/]")
    out.print("  personify.yml        the project file (warehouse, sources, delivery)")
    out.print(
        "  .env                 PERSONIFY_WRITE_KEY, PERSONIFY_ADMIN_TOKEN and "
        "PERSONIFY_SECRET_KEY (keep secret)"
    )
    out.print("  segments/ rules/ templates/ tracking-plan/")
    out.print("Next:")
    out.print(f"  personify status --project {directory}")
    out.print(f"  personify serve --project {directory}    # tracking API on 127.0.0.1:8787")


@app.command("status", rich_help_panel="Start")
def status_command(
    project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None
) -> None:
    """Health at a glance: sources, lag, tables, quarantine, runs, journeys, destinations,
    alerts.

    Sources and their last sync, lag, table sizes, quarantine counts, last run, the
    segments whose last refresh failed (by `run` or `segments refresh`: they kept their
    memberships), and
    per journey the last 7 days' sends, unique opens and clicks (machine ones excluded),
    conversions and revenue (as `personify report journeys` counts them) and its spam complaint
    rate, flagged in red above engagement.max_complaint_rate (default 0.3 %); per destination
    its records sent and rejected and last push — for event forwarding (`kind: events`) its
    lag, the age of the oldest event not yet forwarded, and how many wait; the alerts firing
    (as last evaluated: `personify alerts check` evaluates them now)."""
    from personify.session import open_session
    from personify.status import status_report

    pin_now(now)
    with open_session(project) as session:
        report = status_report(session)
    if json:
        emit_json(report)
        return
    _print_status(report)


def lag_text(seconds: float | None) -> str:
    """A source's lag for people: ``42 s``, ``17 min``, ``3.0 h``, ``2.5 d``; data received
    after the instant of the report (a ``--now`` in the past, a clock behind) says so."""
    if seconds is None:
        return "—"
    if seconds < 0:
        return f"{lag_text(-seconds)} ahead"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _last_run(source: dict[str, Any]) -> str:
    """``"1,200 rows in 3.1 s"`` (or ``failed``) for a pulled source's last run."""
    if not source.get("last_run_at"):
        return "—"
    if source.get("last_run_status") == "failed":
        return "failed"
    return f"{source['last_run_rows']:,} rows in {source['last_run_seconds']:.1f} s"


def _print_queues(queues: dict[str, Any]) -> None:
    """The real-time figures: bus depth, and the serving process's own when run inside it."""
    out = console()
    if "bus_depth" in queues:
        depth = queues["bus_depth"]
        shown = f"{depth:,}" if depth is not None else f"unreachable ({queues.get('bus_error')})"
        out.print(f"bus depth (events not yet stored by a worker): {shown}")
    server = queues.get("server")
    if server:
        lat = server["event_to_profile_seconds"]
        cache = server.get("cache") or {}
        if server.get("continuous"):
            out.print(
                f"continuous mode: {server['applied']:,} applied, "
                f"{server.get('queue_depth', 0):,} waiting; event → profile p50 "
                f"{lat['p50']} s, p99 {lat['p99']} s (last {lat['passes']} passes)"
            )
        if cache:
            out.print(
                f"profile cache: hit ratio {cache['hit_ratio']:.1%} "
                f"({cache['hits']:,} hits, {cache['misses']:,} misses)"
            )
    elif queues.get("note"):
        out.print(escape(str(queues["note"])))


def _print_journeys(journeys: dict[str, Any], ceiling: float | None) -> None:
    """The journeys' last 7 days (as ``personify report journeys`` counts them), a complaint
    rate above ``ceiling`` (``engagement.max_complaint_rate``) in red."""
    if not journeys:
        return
    table = Table(
        "journey",
        "sends",
        "unique opens",
        "unique clicks",
        "conversions",
        "revenue",
        "complaints",
        title="Journeys, last 7 days (machine opens excluded)",
    )
    for name, j in journeys.items():
        high = bool(j.get("complaint_rate_high"))
        complaints = f"{j.get('complained', 0):,} ({j.get('complaint_rate', 0.0):.2%})"
        table.add_row(
            name,
            f"{j['sends']:,}",
            f"{j['unique_opens']:,}",
            f"{j['unique_clicks']:,}",
            f"{j['conversions']:,}",
            f"{j['revenue']:,.2f}",
            Text(complaints, style="bold red") if high else complaints,
        )
    out = console()
    out.print(table, markup=False)
    for name, j in journeys.items():
        if j.get("complaint_rate_high"):
            limit = f" {ceiling:.2%}" if ceiling is not None else ""
            out.print(
                f"[red]journey {escape(name)}: spam complaint rate {j['complaint_rate']:.2%} "
                f"of delivered in the last 7 days is above engagement.max_complaint_rate{limit}"
                " — mailbox providers throttle or block senders above 0.3 %[/]"
            )


def _print_status(report: dict[str, Any]) -> None:
    out = console()
    wh = report["warehouse"]
    out.print(
        f"[bold]{report['project']}[/]  {report['root']}\n"
        f"warehouse: {wh['backend']} {wh['url']} (schema v{wh['schema_version']})"
    )
    sources = Table(
        "source",
        "kind",
        "last sync",
        "lag",
        "quarantined",
        "last run",
        "next run",
        title="Sources",
    )
    for s in report["sources"]:
        lag = lag_text(s["lag_seconds"])
        sources.add_row(
            s["name"],
            s["kind"],
            s["last_sync_at"] or "never",
            lag,
            str(s["quarantined"]),
            _last_run(s),
            s.get("next_run_at") or "—",
        )
    out.print(sources)
    if any((s["lag_seconds"] or 0) < 0 for s in report["sources"]):
        out.print(
            "ahead: the source's newest data is stamped after this report's instant — a "
            "sender's clock ahead, data simulated into the future (the demo's email reactions) "
            "or a --now in the past"
        )
    for s in report["sources"]:
        if s.get("last_error"):
            out.print(f"[red]{escape(s['name'])}: last run failed: {escape(s['last_error'])}[/]")
    if report.get("destinations"):
        pushes = Table(
            "destination",
            "sent",
            "rejected",
            "removed (last run) / lag",
            "last run",
            "next run",
            title="Destinations",
        )
        for d in report["destinations"]:
            records = d["records"]
            removed = "—"
            if d.get("kind") == "events":  # (forwarding: what waits, and how old the oldest is)
                removed = (
                    f"lag {d.get('lag_seconds', 0):,.0f} s, {d.get('events_pending', 0):,} waiting"
                )
            if d.get("on_remove") == "delete":
                removed = f"{d.get('last_run_removed') or 0:,}"
                if refused := records.get("remove_rejected", 0):
                    removed += f" ({refused:,} refused)"
                if erased := records.get("erased", 0):
                    removed += f" ({erased:,} erased, pending)"
            pushes.add_row(
                d["name"],
                f"{records.get('sent', 0):,}",
                f"{records.get('rejected', 0):,}",
                removed,
                _last_run(d),
                d.get("next_run_at") or "—",
            )
        out.print(pushes)
        for d in report["destinations"]:
            if d.get("last_error"):
                out.print(
                    f"[red]{escape(d['name'])}: last push failed: {escape(d['last_error'])}[/]"
                )
            for warning in d.get("last_run_warnings") or []:
                out.print(f"[yellow]last push: {escape(warning)}[/]")
    for problem in report.get("problems") or []:
        out.print(f"[red]problem: {escape(problem)}[/]")
    tables = Table("table", "rows", title="Tables")
    estimated = set(report.get("tables_estimated", []))
    for name, count in report["tables"].items():
        tables.add_row(name, f"≈ {count:,}" if name in estimated else f"{count:,}")
    out.print(tables)
    _print_queues(report.get("queues") or {})
    q = report["quarantine"]
    reasons = sorted(q["by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    by_reason = ", ".join(f"{reason} {n:,}" for reason, n in reasons)
    line = f"quarantine: {q['total']:,} row(s)" + (f" — {by_reason}" if by_reason else "")
    out.print(escape(line))
    _print_journeys(report.get("journeys") or {}, report.get("max_complaint_rate"))
    run = report["last_run"]
    if run:
        out.print(f"last run: {run['status']} at {run['started_at']} (now={run['now']})")
        for error in run.get("errors") or []:
            out.print(f"[red]last run error: {escape(error)}[/]")
    else:
        out.print("last run: never — try `personify run`")
    said = {str(e) for e in (run or {}).get("errors") or []}
    for failing in report.get("segments_failing") or []:
        if f"audiences: {failing['error']}" not in said:  # (a refresh outside the last run)
            out.print(
                f"[red]segment failing since {escape(str(failing['failed_at']))} "
                f"({escape(str(failing['kind']))}): {escape(failing['error'])}[/]"
            )
    whole = report.get("segments_whole_in_real_time") or []
    if whole:
        names = ", ".join(f"{w['segment']} ({w['ranks']})" for w in whole)
        out.print(
            escape(f"segments refreshed whole by every real-time pass (they rank): {names}")
            + " — `refresh: every 5m` in a header makes one cheaper"
        )
    predictive = report.get("predictive")
    if predictive:
        line = f"predictive traits: {predictive['status']} at {predictive['fitted_at']}"
        if predictive.get("note"):
            line += f" — {predictive['note']}"
        out.print(escape(line) + " (personify traits predictive)")
    recon = report.get("reconciliation")
    if recon:
        line = (
            f"reconciliation: {recon['status']} — {recon['discrepancies']} discrepancies, "
            f"{recon['pending']} pending (threshold {recon['threshold']})"
        )
        flagged = " — [red]flagged for review[/] (personify reconcile)" if recon["flagged"] else ""
        out.print(escape(line) + flagged)
    quality = report.get("quality") or {}
    for v in quality.get("violations", []):
        mark = "red" if v["rule"] in quality.get("flagged", []) else "yellow"
        out.print(
            f"[{mark}]quality rule {escape(v['rule'])} ({v['action']}): "
            f"{v['violations']:,} row(s)[/]"
        )
    for a in quality.get("anomalies", []):
        where = f"{escape(a['table'])}/{escape(a['source'])}/{escape(a['name'])}"
        if a["kind"] == "null_rate":
            out.print(
                f"[yellow]null rate jump: {where} {a['last_day']}% null in the last 24 h, "
                f"{a['median']:.0f}% the week before[/]"
            )
            continue
        out.print(
            f"[yellow]volume {a['kind']}: {where} "
            f"{a['last_day']:,} in the last 24 h, median {a['median']:,.0f} a day[/]"
        )
    for c in quality.get("schema_changes", []):
        types = {"added": c["new_type"], "removed": c["old_type"]}.get(
            c["change"], f"{c['old_type']} → {c['new_type']}"
        )
        out.print(
            f"[yellow]schema drift: {escape(c['source'])}/{escape(c['stream'])} field "
            f"{escape(c['field'])} {c['change']} ({escape(str(types))})[/]"
        )
    for alert in report.get("alerts") or []:
        if alert["state"] == "firing":
            out.print(
                f"[red]alert {escape(alert['name'])} firing since {alert['firing_since']} "
                f"({escape(alert['signal'])})[/] — personify alerts list"
            )
