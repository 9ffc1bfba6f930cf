"""Subject access export: everything held about a person, as one JSON-ready document.

Every personal table (:mod:`.footprint`) contributes the rows that are the person's — the
profile, identities, events (anonymous ones linked through the graph too), orders and their
items, tickets, consent and its history with proof, messages, tags, memberships, audience
changes, discount codes, journey state, provenance (``profile_observations``), the identity graph
around them, source records — plus the quarantined payloads that mention one of their identifiers,
the outbox files written to them, the records destinations took (``destinations``), the
``kind: events`` destinations their events were forwarded to with how many (``events_forwarded``:
names and counts, no payload), and the audit entries about them (who read, exported or changed
what, and when). Suppression rows are listed without their hashes.

``possibly_theirs`` lists apart the rows that may be the person's or someone else's
(:data:`~personify.privacy.footprint.POSSIBLY`: a shared device's events that identity cannot
attribute) — erasure deletes them too, so the export shows what it would take.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from personify import clock
from personify.config import OutboxDelivery, Project
from personify.privacy.audit import customer_hash
from personify.privacy.crypto import ENCRYPTED_FIELDS, KeyRing, is_encrypted, project_ring
from personify.privacy.fields import from_project, open_value
from personify.privacy.footprint import (
    Footprint,
    Where,
    footprint,
    personal_tables,
    possibly,
    where,
)
from personify.privacy.hashing import optional_key
from personify.privacy.subjects import resolve
from personify.warehouse.base import UNNEST, Warehouse, quote
from personify.warehouse.schema import Table

FORMAT_VERSION = 1
_HIDDEN: dict[str, tuple[str, ...]] = {
    "suppressions": ("subject_hash",),
    "field_index": ("value_hash",),
}
"""Columns left out of the export (keyed hashes mean nothing to the person)."""


def _rows(
    wh: Warehouse, table: Table, f: Footprint, rule: Where | None = None
) -> list[dict[str, Any]]:
    cond, params = rule or where(table, f)
    cols = [c for c in table.column_names if c not in _HIDDEN.get(table.name, ())]
    order = ", ".join(quote(c) for c in (table.primary_key or table.column_names[:2]))
    rows: list[dict[str, Any]] = wh.fetch_arrow(
        f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table.name)} "
        f"WHERE {cond} ORDER BY {order}",
        params,
    ).to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, str) and table.column(key).type == "JSON":
                try:
                    row[key] = json.loads(value)
                except ValueError:
                    pass
    return rows


def _decrypt(tables: dict[str, list[dict[str, Any]]], ring: KeyRing | None) -> None:
    """Encrypted fields in plain text (the person is entitled to them); left sealed without
    the key ring."""
    if ring is None:
        return
    for name in ENCRYPTED_FIELDS:
        table_name, column = name.split(".", 1)
        for row in tables.get(table_name, []):
            if is_encrypted(row.get(column)):
                row[column] = ring.decrypt(row[column], field=name)


def _access_log(wh: Warehouse, project: Project, f: Footprint) -> list[dict[str, Any]]:
    """Audit entries about the person (who read, exported or changed what, and when)."""
    key = optional_key(project)
    hashes = [customer_hash(key, c) for c in f.customer_ids]
    rows: list[dict[str, Any]] = wh.fetch_arrow(
        "SELECT occurred_at, action, actor FROM audit_log "
        f"WHERE subject_hash IN (SELECT {UNNEST}) ORDER BY occurred_at, id",
        [hashes],
    ).to_pylist()
    return rows


def outbox_folder(project: Project) -> Path | None:
    """The outbox folder, when the project delivers to one."""
    delivery = project.config.delivery
    return project.path(delivery.path) if isinstance(delivery, OutboxDelivery) else None


def outbox_entries(folder: Path | None, f: Footprint) -> list[dict[str, Any]]:
    """Index entries of the outbox written to the person (by customer id)."""
    if folder is None or not (folder / "index.jsonl").exists():
        return []
    ids = set(f.customer_ids)
    found = []
    for line in (folder / "index.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("customer_id") in ids:
            found.append(entry)
    return found


def _pushed(wh: Warehouse, project: Project, f: Footprint) -> list[dict[str, Any]]:
    from personify.destinations import pushed

    return pushed(wh, project, f.keys)


def _events_forwarded(wh: Warehouse, project: Project, f: Footprint) -> list[dict[str, Any]]:
    from personify.config import EventsDestination
    from personify.destinations.events import forwarded_to
    from personify.warehouse.schema import EVENTS

    wanted = [d for d in project.config.destinations if isinstance(d, EventsDestination)]
    return forwarded_to(wh, wanted, where(EVENTS, f)) if wanted else []


def export_subject(wh: Warehouse, project: Project, who: str) -> dict[str, Any]:
    """Everything about the person ``who`` names. Raises :class:`~personify.errors.NotFound`."""
    customer_id = resolve(wh, project, who)
    f = footprint(wh, customer_id, project.config.identity)
    tables = {t.name: _rows(wh, t, f) for t in personal_tables()}
    maybe = {
        t.name: _rows(wh, t, f, rule)
        for t in personal_tables()
        if (rule := possibly(t, f)) is not None
    }
    _decrypt(tables, project_ring(project))
    _decrypt(maybe, project_ring(project))
    cipher = from_project(project)
    if cipher is not None:
        tables["customers"] = [cipher.decrypt_row(r) for r in tables.get("customers", [])]
        # inputs and provenance hold deterministic tokens, the graph blind emails/phones
        for row in tables.get("customer_records", []):
            for column in cipher.columns:
                row[column] = open_value(wh, column, row.get(column))
        for name in ("orders", "tickets"):
            for row in tables.get(name, []):
                row["email"] = open_value(wh, "email", row.get("email"))
        for row in tables.get("profile_observations", []):
            row["value"] = open_value(wh, str(row["field"]), row["value"])
        for name in ("identities", "identity_nodes", "list_members"):
            for row in tables.get(name, []):
                row["value"] = f.shown(str(row["kind"]), str(row["value"]))
    return {
        "format": FORMAT_VERSION,
        "generated_at": clock.now(),
        "customer_id": customer_id,
        "customer_ids": list(f.customer_ids),
        "identifiers": [{"kind": k, "value": f.shown(k, v)} for _, k, v in f.nodes],
        "profile": next(iter(tables.get("customers", [])), None),
        "tables": tables,
        "lists": sorted({str(r["list"]) for r in tables.get("list_members", [])}),
        "possibly_theirs": maybe,
        "outbox": outbox_entries(outbox_folder(project), f),
        "destinations": _pushed(wh, project, f),
        "events_forwarded": _events_forwarded(wh, project, f),
        "access_log": _access_log(wh, project, f),
        "counts": {name: len(rows) for name, rows in tables.items()},
    }
