"""``personify run``, ``personify sync`` and ``personify push``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    app,
    console,
    emit_json,
    err_console,
    pin_now,
)
from personify.cli.progress import progress_bars


@app.command("run", rich_help_panel="Pipeline")
def run_command(project: ProjectOpt = Path("."), json: JsonOpt = False, now: NowOpt = None) -> None:
    """One full cycle at --now: sync → identity → profiles → audiences → journeys → delivery →
    push (the destinations).

    Journeys enter the customers their triggers name and advance every journey to --now
    (waits, branches, goals), deciding each email once; delivery sends the queued emails that
    are due (consent checked again, quiet hours and the frequency cap applied). Every email has
    an idempotency key: running it twice at the same --now, or again after a crash, sends
    nothing twice. The table ends with the emails sent per journey. Then the alerts
    (alerts: in personify.yml) are evaluated and their notifiers told; a notifier that fails
    is reported and retried with a backoff (given up after 24 h), it never fails the run.

    A segment whose SQL the warehouse refuses keeps its memberships while the other segments
    and stages go on; the error (its file, the database's message) is printed and the run
    exits 1. Likewise a template that is missing or does not parse (in any language version,
    layout or partial) skips the journeys that send it — they neither advance nor send, their
    queued emails wait — while the other journeys go on; the error (the journey's file:line,
    the template's file:line) is printed and the run exits 1.
    """
    from personify import pipeline
    from personify.session import open_session
    from personify.status import project_problems

    pin_now(now)
    with open_session(project) as session:
        report = pipeline.run(session)
        problems = project_problems(session.project)
    if json:
        emit_json(
            {
                "run_id": report.run_id,
                "now": report.now,
                "seconds": round(report.seconds, 3),
                "stages": [
                    {"name": s.name, "seconds": round(s.seconds, 3), "counts": s.counts}
                    | ({"errors": s.problems} if s.problems else {})
                    for s in report.stages
                ],
                "problems": problems,
                "errors": report.problems,
                "alerts": report.alerts,
            }
        )
        if report.problems:
            raise typer.Exit(1)
        return
    table = Table(
        "stage",
        "seconds",
        "counts",
        title=f"Run {report.run_id[:8]} at {report.now:%Y-%m-%d %H:%M:%S}Z",
    )
    for s in report.stages:
        counts = ", ".join(f"{k}={v:,}" for k, v in s.counts.items()) or "—"
        table.add_row(s.name, f"{s.seconds:.2f}", counts)
    console().print(table)
    delivery = next((s.counts for s in report.stages if s.name == "delivery"), None)
    if delivery is not None:
        per = ", ".join(
            f"{k.removesuffix('.sent')} {v:,}" for k, v in delivery.items() if k.endswith(".sent")
        )
        skipped = sum(v for k, v in delivery.items() if k.startswith("skipped_"))
        console().print(
            f"Emails: {delivery.get('sent', 0):,} sent"
            + (f" ({per})" if per else "")
            + f", {skipped:,} skipped, {delivery.get('failed', 0):,} failed, "
            f"{delivery.get('held_quiet_hours', 0):,} held for quiet hours"
            + (
                f", {delivery['deferred']:,} deferred (a recipient's server said try later)"
                if delivery.get("deferred")
                else ""
            ),
            highlight=False,
        )
    if report.alerts:
        for name in report.alerts["firing"]:
            err_console().print(f"alert firing: {name}", markup=False)
        for failed in report.alerts["failed"]:
            err_console().print(
                f"warning: alert {failed['alert']}: notifier {failed['notifier']} failed "
                f"({failed['error']}); retried later (backoff 1 min doubling to 1 h)",
                markup=False,
            )
        for failed in report.alerts.get("given_up", []):
            err_console().print(
                f"warning: alert {failed['alert']}: notifier {failed['notifier']} failing for "
                f"24 h ({failed['error']}); given up — fix it in personify.yml",
                markup=False,
            )
    for problem in problems:  # the run went on: said on stderr, after the table
        err_console().print(f"warning: {problem}", markup=False)
    for error in report.problems:  # a stage went on without a part of its work
        err_console().print(f"error: {error}", markup=False)
    if report.problems:
        raise typer.Exit(1)


@app.command("sync", rich_help_panel="Pipeline")
def sync_command(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Source names (default: all).")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Pull sources now: files and REST APIs (incremental: what was already imported is not
    loaded again; an interrupted REST sync resumes where it stopped).

    Each source's run is recorded: `personify status` shows its last run, rows, duration, next
    scheduled run and last error.
    """
    from personify.quality.rules import after_sync
    from personify.session import open_session
    from personify.sources import sync_sources

    pin_now(now)
    with open_session(project) as session, progress_bars(enabled=not json) as progress:
        results = sync_sources(session, sources or None, progress=progress)
        after_sync(session)  # the validation rules (quality.rules), when configured
    if json:
        emit_json(
            [
                {
                    "source": r.source,
                    "kind": r.kind,
                    "seconds": round(r.seconds, 3),
                    "counts": r.counts,
                }
                for r in results
            ]
        )
        return
    table = Table("source", "kind", "seconds", "counts", title="Sync")
    for r in results:
        counts = ", ".join(f"{k}={v:,}" for k, v in r.counts.items()) or "—"
        table.add_row(r.source, r.kind, f"{r.seconds:.2f}", counts)
    console().print(table)


@app.command("push", rich_help_panel="Pipeline")
def push_command(
    destinations: Annotated[
        list[str] | None, typer.Argument(help="Destination names (default: all).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Count what would be sent and show a few records (masked); send nothing.",
        ),
    ] = False,
    allow_removals: Annotated[
        bool,
        typer.Option(
            "--allow-removals",
            help="Remove the records that left the model even past max_removals (after a "
            "--dry-run showed they should go).",
        ),
    ] = False,
    forget_stranded: Annotated[
        bool,
        typer.Option(
            "--forget-stranded",
            help="Push nothing: forget the named destinations' stranded removals (erased "
            "people's records no push can remove; recorded in the audit log) after removing "
            "them at the API by hand. With --dry-run: only how many.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Push warehouse rows to other tools' APIs now (reverse ETL, ad audiences, event
    forwarding).

    The `destinations` in personify.yml — e.g. each customer's engagement score and
    lifecycle stage to the CRM, or a segment's members to a Meta Custom Audience or a Google
    Ads Customer Match list (`preset: meta_audience` / `google_ads_audience`: identifiers
    hashed with SHA-256 before they leave, only people who granted `advertising`).

    Only rows that changed since the API last took them are sent, in batches, with retries; a
    record the API refuses is kept as rejected (with its answer) and sent again once its row
    changes. A destination with `on_remove: delete` also removes, at the API, the records that
    left its model (a dry run counts them and shows a few keys, masked) — and first, whatever
    the model says and past max_removals, the records of people `personify privacy erase`
    erased (pending removals; one the API refuses stays pending and goes again next push).
    An ad audience's removal leaves out the identifiers a remaining member shares (a
    household's phone), and sends nothing for a person left with none (`removals_shared`; a
    dry run counts them too: of rows_to_remove, those that will not be sent).
    Removals that can never go — the destination switched to `on_remove: ignore` or gone from
    personify.yml, or privacy.encryption_keys lost the key they were kept under — are warned
    about on stderr (`--json`: each destination's `warnings`), with what to do; so are rows
    Meta took but could not read (its num_invalid_entries); so are an ad audience's erased
    records pushed before it was an audience (no identifiers to name them by). Once you removed
    those people at the API yourself (or accept they stay), `personify push --forget-stranded
    NAME` forgets them, saying how many, with an audit_log entry (`removals_forgotten`);
    `--dry-run` with it only counts them.
    A destination of `kind: events` forwards the event stream instead (tracking calls, and
    events from files and webhooks): each stored event the filters (`events`, `types`,
    `sources`) and consent let through, in Segment's shape with its messageId, at least once
    and never doubled by our retries — from `start` (`now` by default: no history unless
    asked), a refused event kept as rejected; a dry run counts what waits (`events_pending`)
    and shows three events, masked. `schedule: {every: 5s}` makes `personify serve` forward in
    real time; `personify status` shows each one's lag.
    `personify run` pushes after delivery; `personify serve` on each destination's schedule.
    Exits 1 when a destination stopped on an error.
    """
    from personify.destinations import push_destinations, stranded_removals
    from personify.session import open_session

    pin_now(now)
    if forget_stranded:
        _forget_stranded(project, destinations or [], dry_run=dry_run, json=json)
        return
    with open_session(project) as session:
        results = push_destinations(
            session, destinations or None, dry_run=dry_run, allow_removals=allow_removals
        )
        configured = {d.name for d in session.project.config.destinations}
        gone = (  # (a destination removed from personify.yml: no push of its own says it)
            []
            if destinations
            else [
                s.message()
                for s in stranded_removals(session.warehouse, session.project)
                if s.destination not in configured
            ]
        )
    warnings = [w for r in results for w in r.warnings] + gone
    if json:
        emit_json(
            [
                {
                    "destination": r.destination,
                    "seconds": round(r.seconds, 3),
                    "counts": r.counts,
                    "error": r.error,
                    "warnings": r.warnings,
                    **({"sample": r.sample, "removals": r.removals} if dry_run else {}),
                }
                for r in results
            ]
        )
        for warning in gone:
            err_console().print(f"warning: {warning}", markup=False)
    else:
        if not results:
            console().print('No destinations in personify.yml (see README, "Destinations").')
        table = Table(
            "destination",
            "seconds",
            "counts",
            "error",
            title="Push" + (" (dry run)" if dry_run else ""),
        )
        for r in results:
            counts = ", ".join(f"{k}={v:,}" for k, v in r.counts.items()) or "—"
            table.add_row(r.destination, f"{r.seconds:.2f}", counts, r.error or "")
        if results:
            console().print(table)
        for r in results:
            for record in r.sample:
                console().print_json(data=record)
            for key in r.removals:
                console().print(f"{r.destination}: would remove {escape(key)}")
        for warning in warnings:
            err_console().print(f"warning: {warning}", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(1)


def _forget_stranded(project: Path, names: list[str], *, dry_run: bool, json: bool) -> None:
    """``personify push --forget-stranded NAME…``: each destination's stranded removals counted
    and (unless ``dry_run``) forgotten, audited."""
    from personify.destinations import forget_stranded_removals
    from personify.session import open_session

    if not names:
        raise typer.BadParameter(
            "name the destination(s) whose stranded removals to forget "
            "(`personify status` lists them)",
            param_hint="--forget-stranded",
        )
    with open_session(project) as session:
        done = [forget_stranded_removals(session, n, dry_run=dry_run) for n in names]
    if json:
        emit_json(
            [
                {
                    "destination": f.destination,
                    "records": f.records,
                    "forgotten": not dry_run and f.records > 0,
                    "why": [s.why for s in f.stranded],
                }
                for f in done
            ]
        )
        return
    out = console()
    for f in done:
        if not f.records:
            out.print(f"{escape(f.destination)}: no stranded removals.")
            continue
        verb = "would forget" if dry_run else "forgot"
        why = "; ".join(s.why for s in f.stranded)
        out.print(
            f"{escape(f.destination)}: {verb} {f.records:,} stranded removal(s) — {escape(why)}"
            + ("" if dry_run else " (recorded in the audit log: removals_forgotten)")
        )
