"""``personify demo``: a synthetic shop, wired into a project and run end to end."""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from personify import clock
from personify.cli.app import (
    JsonOpt,
    NewProjectOpt,
    NowOpt,
    app,
    console,
    emit_json,
    new_project_folder,
    pin_now,
)
from personify.cli.progress import progress_bars
from personify.progress import Progress

if TYPE_CHECKING:
    import pyarrow as pa

    from personify import pipeline
    from personify.demo import DemoProject
    from personify.session import Session
    from personify.sources import SyncResult

SEGMENT_QUERY = (
    "SELECT customer_id, email, purchase_date, engagement_score FROM customer_data "
    "WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80"
)
"""The seed document's segment, in MySQL, as written."""


@app.command("demo", rich_help_panel="Start")
def demo_command(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Folder for the demo project.", show_default="personify-demo"),
    ] = None,
    customers: Annotated[
        int, typer.Option("--customers", "-n", min=10, help="Customers in the synthetic world.")
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed, the same world.")] = 7,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Replace another demo world found in DIR (deletes its data)."),
    ] = False,
    live_apis: Annotated[
        bool,
        typer.Option(
            "--live-apis/--files",
            help="--live-apis (the default): pull the CRM, orders, tickets and payments from "
            "the world served as live local APIs (HubSpot, Shopify, Zendesk and Stripe styles, "
            "429s included) through REST sources, and send signed order webhooks. --files: "
            "import them from the world's files instead (CSV, JSON Lines, Parquet).",
        ),
    ] = True,
    json: JsonOpt = False,
    now: NowOpt = None,
    project: NewProjectOpt = None,
) -> None:
    """Build a synthetic e-commerce world, make a project in DIR wired to it, run the main job.

    The world: a catalogue, customers known to a CRM and a shop under different ids, consents,
    web sessions that log in and abandon carts, orders, support tickets, email opens and clicks —
    and a sprinkle of invalid records. It is written to DIR/data as CSV, JSON Lines and Parquet.
    The CRM contacts, shop orders, help-desk tickets and payments are served from it as live
    local mock APIs and pulled by the project's REST sources (incremental, 429s sprinkled in);
    the shop's latest orders arrive as signed webhooks; the catalogue, shop customers, consents
    and email events are imported from files (with --files, everything is); the web sessions go
    through the tracking API (POST /v1/batch with the write key, on a local port) as a shop's
    pages would send them. The abandoned-cart journey holds out 20 % of the carts; its
    recipients then react (seeded opens, clicks and purchases, the email's effect built in,
    through the pixel and redirect routes, order webhooks and /v1/batch) and the journeys report
    as of three days later is written to DIR/report.html, its headline printed (sent, clicked,
    revenue recovered, uplift over the holdout with its interval; not with --files). Running it
    again on DIR regenerates the same world (its instant is
    kept), stores nothing twice and sends nothing twice; the project stays usable: try
    `personify status --project DIR` (its mock APIs come up when a sync needs them).

    The project also shows the newer features, a summary line each: French customers (their
    CRM language) get a French variant of the cart email (templates/abandoned_cart.fr.liquid,
    Babel's currency, discount_amount and date filters); every email ends with a footer partial
    (templates/partials/); predictive traits are on and a segment reads them; the world's VIP
    sheet (data/lists/vip.csv) is uploaded as the list vip, read by a segment; the data team's
    loyalty table is loaded into analytics.loyalty and read through relations:; and an alert
    on quarantined rows fires, emailing ops through the outbox (`personify alerts list`).
    """
    from personify import pipeline
    from personify.demo import make_demo_project
    from personify.demo.features import features_summary, load_team_table, upload_vip_list
    from personify.journeys import email_summary
    from personify.session import open_session
    from personify.status import status_report

    directory = new_project_folder(directory, project, Path("personify-demo"))
    pin_now(now)  # validates --now
    instant = clock.now() if now else None
    with progress_bars(enabled=not json) as progress:
        demo = make_demo_project(
            directory,
            customers=customers,
            seed=seed,
            now=instant,
            reset=reset,
            progress=progress,
            live_apis=live_apis,
            showcase=True,
        )
        clock.pin(demo.now)  # the run evaluates the world at its own instant
        with open_session(demo.root) as session:
            # before the run, so that the segments reading them count them
            vip = upload_vip_list(session, demo)
            load_team_table(session, demo)
            syncs: list[SyncResult] = []
            report = pipeline.run(session, stages=_stages(syncs, progress, demo))
            reactions = react(session, demo) if _has_webhooks(session) else None
            status = status_report(session)
            emails = email_summary(session, prefer="abandoned_cart")
            features = features_summary(session, report, vip)
    summary = _summary(demo, report, syncs, status, directory)
    summary["emails"] = emails
    summary["reactions"] = reactions
    summary["features"] = features
    summary["next"] += _feature_commands(features, directory, demo.manifest["now"])
    if reactions is not None:
        summary["next"].insert(
            1,
            f"personify report journeys --project {_shown(directory)} "
            f"--now {reactions['report_at']} --out report.html",
        )
    if json:
        emit_json(summary)
    else:
        _print(summary)


def _stages(
    syncs: list[SyncResult], progress: Progress | None, demo: DemoProject
) -> tuple[Any, ...]:
    """The pipeline's stages, the sync one drawing progress bars and keeping its results; it
    first sends the world's web sessions through the tracking API."""
    from personify import pipeline
    from personify.sources import sync_sources

    def sync(session: Session) -> dict[str, int]:
        syncs.append(send_web_sessions(session, demo, progress))
        syncs.extend(sync_sources(session, progress=progress))
        if _has_webhooks(session):
            syncs.append(send_webhooks(session, demo))
        totals: dict[str, int] = {}
        for result in syncs:
            for key, value in result.counts.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    return tuple((name, sync if name == "sync" else stage) for name, stage in pipeline.STAGES)


def react(session: Session, demo: DemoProject) -> dict[str, Any]:
    """The recipients react to their abandoned-cart emails (:mod:`personify.demo.reactions`:
    opens, clicks and purchases through the project's own API); then the journeys report as of
    the end of the attribution window, written to ``report.html`` in the project, and its
    abandoned-cart headline."""
    import time

    from personify.demo.reactions import JOURNEY, simulate_reactions
    from personify.engagement.html import journeys_html, revenue_series
    from personify.engagement.report import journeys_report

    started = time.perf_counter()
    done = simulate_reactions(session, seed=int(demo.manifest["seed"]), sent_at=demo.now)
    at = done.report_at
    report = journeys_report(session.warehouse, session.project, at)
    page = journeys_html(
        report,
        project_name=session.project.config.name,
        now=at,
        revenue=revenue_series(session.warehouse, session.project, at),
        max_complaint_rate=session.project.config.engagement.max_complaint_rate,
    )
    html = demo.root / "report.html"
    html.write_text(page, encoding="utf-8")
    steps = [s for s in report.steps if s.journey == JOURNEY]
    sent = [s for s in steps if s.sends]
    sends = sum(s.sends for s in sent)
    clicks = sum(s.unique_clicks for s in sent)
    lift = next((s.uplift for s in sent if s.uplift is not None), None)
    return {
        "journey": JOURNEY,
        "report_at": at.isoformat().replace("+00:00", "Z"),
        "report": str(html),
        "messages": done.messages,
        "held_out": done.held_out,
        "opens": done.opens,
        "clicks": done.clicks,
        "machine_hits": done.machine_hits,
        "purchases": done.purchases,
        "held_out_purchases": done.held_out_purchases,
        "requests": done.requests,
        "sent": sends,
        "unique_opens": sum(s.unique_opens for s in sent),
        "unique_clicks": clicks,
        "click_rate": round(clicks / sends, 4) if sends else 0.0,
        "conversions": sum(s.conversions for s in sent),
        "revenue": round(sum(s.revenue for s in sent), 2),
        "uplift": None if lift is None else dataclasses.asdict(lift),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _has_webhooks(session: Session) -> bool:
    from personify.demo.mock_apis import WEBHOOK_SOURCE

    return any(s.name == WEBHOOK_SOURCE for s in session.project.config.sources)


def send_webhooks(session: Session, demo: DemoProject) -> SyncResult:
    """Post the world's latest orders to the project's own webhook endpoint, signed as Shopify
    signs them (a real server on a loopback port of this process)."""
    import time

    from personify.demo.mock_apis import WEBHOOK_SOURCE, send_order_webhooks
    from personify.server.background import background_server
    from personify.sources import SyncResult

    started = time.perf_counter()
    with background_server(session) as url:
        answers = send_order_webhooks(url, demo.data)
    counts = {
        "rows_read": sum(answers.values()),
        "rows_loaded": answers.get("accepted", 0),
        "rows_duplicate": answers.get("duplicate", 0),
        "rows_quarantined": answers.get("quarantined", 0) + answers.get("refused", 0),
    }
    return SyncResult(WEBHOOK_SOURCE, "webhook", counts, time.perf_counter() - started)


def send_web_sessions(
    session: Session, demo: DemoProject, progress: Progress | None = None
) -> SyncResult:
    """Post the world's web sessions to the project's own tracking API — a real server on a
    loopback port of this process, ``POST /v1/batch`` with the write key, durable acks — as the
    shop's pages would. Resent on a rerun, they store nothing twice (``messageId``)."""
    import time

    import pyarrow.parquet as pq

    from personify.demo.project import web_event_files
    from personify.ingest.tracking.sender import SendReport, send_batches
    from personify.server.background import background_server
    from personify.sources import SyncResult

    started = time.perf_counter()
    files = web_event_files(demo.data)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    label = "Sending web sessions to /v1/batch"

    def sent(report: SendReport) -> None:
        if progress is not None:
            progress(label, report.received, total)

    def batches() -> Iterator[pa.RecordBatch]:
        for file in files:
            yield from pq.ParquetFile(file).iter_batches(batch_size=20_000)

    if progress is not None:
        progress(label, 0, total)
    count = "SELECT count(*) FROM events WHERE source = ?"
    before = session.warehouse.scalar(count, ["web"])
    with background_server(session) as url:
        key = demo.keys["PERSONIFY_WRITE_KEY"]
        report = send_batches(url, key, batches(), on_sent=sent, compress=False)  # loopback
    # a request whose events were all accepted answers {"success": true}, resends included
    stored = session.warehouse.scalar(count, ["web"]) - before
    counts = {
        "rows_read": report.received,
        "rows_loaded": stored,
        "rows_duplicate": report.accepted - stored,
        "rows_quarantined": report.quarantined + report.rejected,
        "requests": report.requests,
    }
    return SyncResult("web", "tracking", counts, time.perf_counter() - started)


def _shown(path: Path) -> str:
    """``path`` as the user would type it (relative to the current folder when inside it)."""
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve())
        text = str(rel) if str(rel) != "." else "."
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def _summary(
    demo: DemoProject,
    report: pipeline.RunReport,
    syncs: list[SyncResult],
    status: dict[str, Any],
    directory: Path,
) -> dict[str, Any]:
    where = _shown(directory)
    manifest = demo.manifest
    return {
        "project": str(demo.root),
        "created": demo.created,
        "world": {
            "seed": manifest["seed"],
            "customers": manifest["customers"],
            "now": manifest["now"],
            "data": str(demo.data),
            "files": manifest["files"],
            "invalid": manifest["invalid"],
            "seconds": {k: round(v, 3) for k, v in demo.seconds.items()},
        },
        "run": {
            "run_id": report.run_id,
            "now": report.now,
            "seconds": round(report.seconds, 3),
            "stages": [
                {"name": s.name, "seconds": round(s.seconds, 3), "counts": s.counts}
                for s in report.stages
            ],
        },
        "sources": [
            {"source": r.source, "seconds": round(r.seconds, 3), "counts": r.counts} for r in syncs
        ],
        "tables": status["tables"],
        "quarantine": status["quarantine"],
        "where": {
            "project": str(demo.root),
            "data": str(demo.data),
            "outbox": str(demo.root / "outbox"),
            "project_file": str(demo.root / "personify.yml"),
        },
        "keys": {
            "write_key": demo.keys.get("PERSONIFY_WRITE_KEY"),
            "admin_token": demo.keys.get("PERSONIFY_ADMIN_TOKEN"),
        },
        "next": [
            f"personify status --project {where}",
            f'personify sql "SELECT count(*) FROM customers" --project {where}',
            f"personify sql {shlex.quote(SEGMENT_QUERY)} --dialect mysql --project {where}",
            f"personify serve --project {where}",
            f"personify run --project {where} --now {manifest['now']}   # sends nothing twice",
        ],
    }


def _print(summary: dict[str, Any]) -> None:
    out = console()
    world = summary["world"]
    secs = world["seconds"]
    out.print(
        f"[bold]Synthetic shop[/]: {world['customers']:,} customers, seed {world['seed']}, "
        f"now {world['now']} — built in {secs['build']:.1f} s, written in {secs['write']:.1f} s"
    )
    _print_run(summary)
    sources = Table("source", "read", "loaded", "duplicate", "quarantined", "seconds")
    for r in summary["sources"]:
        c = r["counts"]
        sources.add_row(
            r["source"],
            *(f"{c.get(k, 0):,}" for k in ("rows_read", "rows_loaded", "rows_duplicate")),
            f"{c.get('rows_quarantined', 0):,}",
            f"{r['seconds']:.2f}",
        )
    out.print(sources)
    _print_tables(summary)
    _print_emails(summary)
    _print_reactions(summary)
    _print_features(summary)
    _print_next(summary)


COUNTS_WIDTH = 72
"""Columns of the main job's ``counts`` cell: a stage's many counts wrap between two counts
(never inside one) instead of making the table hundreds of columns wide — off a terminal the
console is :data:`~personify.cli.app.PIPED_WIDTH` wide, on a terminal a wide one."""


def _print_run(summary: dict[str, Any]) -> None:
    run = Table("stage", "seconds", "counts", title="Main job (personify run)")
    run.columns[2].max_width = COUNTS_WIDTH
    run.columns[2].overflow = "fold"  # (a single count longer than the cell: folded, not cut)
    for s in summary["run"]["stages"]:
        counts = ", ".join(f"{k}={v:,}" for k, v in s["counts"].items()) or "—"
        run.add_row(s["name"], f"{s['seconds']:.2f}", counts)
    console().print(run)


def _print_tables(summary: dict[str, Any]) -> None:
    out = console()
    tables = Table("table", "rows", title="Warehouse")
    for name, count in summary["tables"].items():
        if count:
            tables.add_row(name, f"{count:,}")
    out.print(tables)
    q = summary["quarantine"]
    if q["total"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in q["by_reason"].items())
        out.print(f"Quarantined: {q['total']:,} row(s) — {reasons}")


def _print_emails(summary: dict[str, Any]) -> None:
    out = console()
    emails = summary.get("emails") or {}
    table = Table("journey", "sent", "skipped", "failed", "queued", title="Emails (journeys)")
    for journey, statuses in emails.get("by_journey", {}).items():
        skipped = sum(n for s, n in statuses.items() if s.startswith("skipped_"))
        table.add_row(
            journey or "—",
            f"{statuses.get('sent', 0):,}",
            f"{skipped:,}",
            f"{statuses.get('failed', 0):,}",
            f"{statuses.get('queued', 0):,}",
        )
    if emails.get("by_journey"):
        out.print(table)
    if emails.get("example"):
        out.print(f"[bold]Open one[/]  {_shown(Path(emails['example']))}", highlight=False)


def _print_reactions(summary: dict[str, Any]) -> None:
    r = summary.get("reactions")
    if not r:
        return
    out = console()
    lift = r["uplift"]
    shown = "no holdout to compare with"
    if lift is not None:
        shown = (
            f"uplift {lift['difference'] * 100:+.1f} pp "
            f"[{lift['low'] * 100:+.1f}, {lift['high'] * 100:+.1f}] over the holdout"
            + ("" if lift["conclusive"] else f" ({lift['note']})")
        )
    out.print(
        f"[bold]Abandoned cart[/] (simulated reactions, report at {r['report_at']}): "
        f"{r['sent']:,} sent, {r['click_rate']:.1%} clicked, {r['conversions']:,} orders, "
        f"revenue recovered €{r['revenue']:,.2f}, {shown}",
        highlight=False,
    )
    out.print(f"[bold]Report[/]    {_shown(Path(r['report']))}", highlight=False)


def _print_next(summary: dict[str, Any]) -> None:
    out = console()
    where = summary["where"]
    keys = summary["keys"]
    out.print(f"\n[bold]Project[/]   {where['project']}  (personify.yml, data/, .env)")
    outbox = "" if os.path.isdir(where["outbox"]) else "  (emails land here once delivery runs)"
    out.print(f"[bold]Outbox[/]    {where['outbox']}{outbox}")
    out.print(f"[bold]Write key[/] {keys['write_key']}    (HTTP Basic user for /v1/track …)")
    out.print(f"[bold]Admin token[/] {keys['admin_token']}  (Authorization: Bearer …)")
    out.print("\n[bold]Try next[/]")
    for command in summary["next"]:
        out.print(f"  {command}", markup=False)


def _feature_commands(features: dict[str, Any], directory: Path, now: str) -> list[str]:
    """The commands to try that show the newer features on the demo project (at the world's
    instant ``now``)."""
    where = _shown(directory)
    commands = [
        f"personify lists list --project {where}",
        f'personify sql "SELECT tier, count(*) FROM loyalty GROUP BY tier" --project {where}',
    ]
    who = features["languages"]["french_customer"]
    if who is not None:
        commands.append(
            f"personify render abandoned_cart -c {who} --now {now} --project {where}   # French"
        )
    if features["predictive"] is not None:
        commands.append(
            f"personify traits predictive --holdout --now {now} --out holdout.html "
            f"--project {where}"
        )
    commands.append(f"personify alerts list --project {where}")
    return commands


def _print_features(summary: dict[str, Any]) -> None:
    """A line per newer feature the demo project uses."""
    out = console()
    f = summary["features"]
    lang = f["languages"]
    out.print(
        f"[bold]Languages[/] {lang['customers_with_locale']:,} customers have a locale (the CRM's "
        f"hs_language), {lang['customers_fr']:,} French: {lang['cart_emails_in_french']:,} of "
        f"their {lang['cart_emails_fr']:,} cart emails went out in French "
        f"({lang['template']}, prices by the currency filter)",
        highlight=False,
    )
    out.print(
        "[bold]Partials[/]  every email ends with templates/partials/footer.liquid "
        "({% render 'footer' %}; French: partials/fr/footer.liquid)",
        highlight=False,
    )
    p = f["predictive"]
    if p is None:
        out.print(
            "[bold]Predictive[/] off: pip install 'personify[predictive]' (scipy), then run the "
            "demo again",
            highlight=False,
        )
    elif p["status"] == "fitted":
        out.print(
            f"[bold]Predictive[/] p_alive, expected_orders and predicted_clv filled for "
            f"{p['customers_predicted']:,} customers; segment likely_buyers: "
            f"{p['likely_buyers']:,} members (segments/likely_buyers.sql)",
            highlight=False,
        )
    else:
        out.print(f"[bold]Predictive[/] no fit: {p['note']}", highlight=False)
    lists = f["lists"]
    if lists is not None:
        again = " (already uploaded)" if lists.get("already_uploaded") else ""
        out.print(
            f"[bold]Lists[/]     vip: {lists['members']:,} members from data/lists/vip.csv"
            f"{again}, {lists['rows_quarantined']:,} rows quarantined; segment vip: "
            f"{lists['segment_members']:,} customers (segments/vip.sql)",
            highlight=False,
        )
    for name, rel in f["relations"].items():
        tiers = ", ".join(f"{k} {v:,}" for k, v in rel["tiers"].items())
        out.print(
            f"[bold]Relations[/] {name} → {rel['table']} (the data team's table: {tiers}); "
            f"segment loyalty_gold: {rel['segment_members']:,} customers",
            highlight=False,
        )
    alerts = f["alerts"]
    if alerts is not None:
        firing = ", ".join(alerts["firing"]) or "none"
        sent = len(alerts["sent"])
        told = f"{sent} notification(s) emailed to ops (outbox/)" if sent else "nothing new to tell"
        out.print(f"[bold]Alerts[/]    firing: {firing} — {told}", highlight=False)
