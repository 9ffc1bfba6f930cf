"""``personify privacy export|erase`` and ``personify audit``: subject access, erasure, the log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from personify import clock
from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    _enc,
    app,
    console,
    emit_json,
    out_file,
    pin_now,
    write_out,
)
from personify.errors import ConfigError, PersonifyError

privacy_app = typer.Typer(
    help="Subject access export and erasure (GDPR articles 15, 17; CCPA).",
    no_args_is_help=True,
)
app.add_typer(privacy_app, name="privacy", rich_help_panel="People")

WhoArg = Annotated[str, typer.Argument(help="Customer id, email, or kind:value identifier.")]


@privacy_app.command("export")
def export_command(
    who: WhoArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON document to this file.")
    ] = None,
    mask: Annotated[
        bool,
        typer.Option(
            "--mask",
            help="Mask personal data (***@domain, +***78, A***): what is held, not the values.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Export everything held about a person as one JSON document (GDPR art. 15).

    Everything held about a person as one JSON document: profile, identities, events
    (anonymous ones linked through the identity graph too), orders, tickets, consent and its
    history, messages, tags, memberships, discount codes, provenance, quarantined payloads that
    mention them, outbox entries, and the records destinations pushed to other tools. Printed
    on stdout (JSON with or without --json) unless --out is given."""
    from personify.privacy.audit import log_action
    from personify.privacy.export import export_subject
    from personify.privacy.hashing import optional_key
    from personify.privacy.masking import mask_document
    from personify.session import open_session

    pin_now(now)
    out_file(out)  # before the export is logged: a path that cannot be written refuses it
    with open_session(project) as session:
        wh, proj = session.warehouse, session.project
        doc = export_subject(wh, proj, who)
        log_action(
            wh,
            action="export",
            actor="cli",
            customer_id=doc["customer_id"],
            key=optional_key(proj),
            detail={"rows": sum(doc["counts"].values()), "masked": mask},
        )
    if mask:
        doc = mask_document(doc)
        doc["masked"] = True
    if out is None:
        emit_json(doc)
        return
    import msgspec

    write_out(out, msgspec.json.format(msgspec.json.encode(doc, enc_hook=_enc), indent=2))
    console().print(
        f"wrote {sum(doc['counts'].values())} rows about customer {doc['customer_id']} to {out}"
    )


@privacy_app.command("erase")
def erase_command(
    who: WhoArg,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Afterwards rewrite the DuckDB warehouse file with live data only, so erased "
            "values do not linger in its free pages (needs the file alone: no running serve).",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """Erase a person everywhere, destinations included (GDPR art. 17).

    Erase a person from every table and file (events through every linked id, nested JSON,
    quarantine, messages and outbox files, provenance, the identity graph), leaving a keyed-hash
    tombstone so re-ingested data does not make them marketable again. Destinations that
    received their record and remove records (on_remove: delete, ad audiences) get it removed
    at the next push (pending removals, shown here and by `personify status`); any other
    destination is named: remove the record there. Idempotent and resumable: run it again after
    an interruption. Prints a per-step completion report."""
    from personify.privacy.compact import compact_file
    from personify.privacy.erase import erase_subject
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        report = erase_subject(session.warehouse, session.project, who, actor="cli")
        path = getattr(session.warehouse, "path", None) if compact else None
    doc = report.as_dict()
    if path and path != ":memory:":
        try:
            before, after = compact_file(Path(path))
            doc["compacted"] = {"bytes_before": before, "bytes_after": after}
        except PersonifyError as e:  # e.g. a running serve holds the file: the erasure stands
            doc["compacted"] = {"skipped": e.message, "hint": e.hint}
    if json:
        emit_json(doc)
        return
    out = console()
    if report.status == "already_erased":
        out.print("Nothing left to erase: this person was already erased.")
        for name, n in (report.own_pending or {}).items():
            out.print(f"Pending removals of this person at {name}: {n:,}")
        _print_pending(out, report.pending)
        return
    table = Table("step", "rows / files", "status", title=f"Erasure {report.erasure_id[:12]}")
    for s in report.steps:
        table.add_row(s.step, f"{s.rows:,}", s.status)
    out.print(table)
    out.print(f"Erased: {doc['rows']:,} rows and files removed or rewritten.")
    for d in report.destinations:
        out.print(f"Destination {escape(d.destination)}: {escape(d.message)}")
    for went in report.events_forwarded:
        out.print(f"Destination {escape(went.destination)}: {escape(went.message)}")
    _print_pending(out, report.pending)
    c = doc.get("compacted")
    if c and "skipped" in c:
        out.print(f"Not compacted: {c['skipped']}\n  hint: {c['hint']}")
    elif c:
        out.print(f"Warehouse file compacted: {c['bytes_before']:,} → {c['bytes_after']:,} bytes.")


def _print_pending(out: Any, pending: dict[str, int]) -> None:
    """The removals erasures left pending at destinations (every erasure's)."""
    for name, n in pending.items():
        out.print(
            f"Pending removals at {name} (all erasures): {n:,} — sent first by the next "
            f"`personify push {name}` (or `personify run`)"
        )


@privacy_app.command("keygen")
def keygen_command(
    key_id: Annotated[
        str | None, typer.Option("--id", help="The key's id (default: k + today's date).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Print a new field-encryption key (ID:BASE64).

    Print a new encryption key as ID:BASE64 — put it first in PERSONIFY_ENCRYPTION_KEYS
    (privacy.encryption_keys), keeping older keys after it until `rotate-keys` has run. The key
    is printed, not stored: --project is taken (as by every command) and changes nothing."""
    from personify.privacy.crypto import new_key

    kid = key_id or f"k{clock.now():%Y%m%d}"
    sys.stdout.write(f"{kid}:{new_key()}\n")


@privacy_app.command("rotate-keys")
def rotate_command(project: ProjectOpt = Path("."), json: JsonOpt = False) -> None:
    """Encrypt plain values and re-encrypt old ones under the active key.

    Encrypt plain values of the encrypted fields and re-encrypt those under older keys with
    the active (first) key of privacy.encryption_keys, and recompute every blind index (after
    changing privacy.blind_index_key too). Afterwards the older keys can go."""
    from personify.privacy.crypto import project_ring, rotate
    from personify.privacy.fields import from_project, rotate_customers
    from personify.session import open_session

    with open_session(project) as session:
        ring = project_ring(session.project)
        if ring is None:
            raise ConfigError(
                "no encryption key ring",
                key="privacy.encryption_keys",
                hint="set privacy.encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS} "
                "(make a key with `personify privacy keygen`)",
            )
        counts = rotate(session.warehouse, ring)
        cipher = from_project(session.project)
        if cipher is not None:
            done = rotate_customers(session.warehouse, cipher)
            counts.update(
                {f"customers.{c}": done["rows"] for c in cipher.columns},
            )
            counts["blind index entries"] = done["indexed"]
            counts["records and observations"] = done["reencrypted_inputs"]
    if json:
        emit_json({"active_key": ring.active, "rewritten": counts})
        return
    table = Table("field", "values rewritten", title=f"Encrypted under {ring.active}")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console().print(table)


def _known_action(value: str | None) -> str | None:
    from personify.privacy.audit import ACTIONS

    if value is not None and value not in ACTIONS:
        raise typer.BadParameter(
            f"unknown action {value!r}; use one of: {', '.join(ACTIONS)}", param_hint="--action"
        )
    return value


@app.command("audit", rich_help_panel="People")
def audit_command(
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action: profile_read, export, erase, consent, test_send, "
            "email_preview, segment_preview, removals_forgotten.",
            callback=_known_action,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most entries to show.")] = 100,
    check: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Recompute the log's hash chain instead of listing it: exit 1 if an entry was "
            "altered, removed or inserted. Prints the head hash to keep elsewhere.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """The audit log of privacy actions, newest first (append-only, hash-chained).

    The audit log of privacy actions (exports, erasures, consent changes, profile reads),
    newest first. Subjects appear as keyed hashes only. The log is append-only and hash-chained
    (--verify checks the chain)."""
    from personify.privacy.audit import read_log, verify
    from personify.session import open_session

    if check:
        with open_session(project) as session:
            result = verify(session.warehouse)
        if json:
            emit_json(result.as_dict())
        elif result.ok:
            console().print(
                f"Audit log intact: {result.entries:,} chained entries"
                + (f" (and {result.unchained:,} from before the chain)" if result.unchained else "")
                + (f"; head {result.head_seq} {result.head_hash}" if result.head_hash else "")
            )
        else:
            console().print(
                f"[bold red]Audit log broken[/] at entry {result.broken_at}: {result.problem}"
            )
        if not result.ok:
            raise typer.Exit(1)
        return
    with open_session(project) as session:
        rows = read_log(session.warehouse, action=action, limit=limit)
    if json:
        emit_json({"entries": rows})
        return
    table = Table("at", "action", "actor", "subject", "detail", title="Audit log")
    for r in rows:
        table.add_row(
            f"{r['occurred_at']:%Y-%m-%d %H:%M:%S}Z",
            r["action"],
            r["actor"],
            (r["subject_hash"] or "")[:12],
            ", ".join(f"{k}={v}" for k, v in r["detail"].items()),
        )
    console().print(table)
