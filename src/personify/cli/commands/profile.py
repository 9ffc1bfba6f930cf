"""``personify profile ID_OR_EMAIL``: the unified profile, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from personify.cli.app import JsonOpt, NowOpt, ProjectOpt, app, console, emit_json, pin_now

_TRAITS = (
    "order_count",
    "total_spent",
    "average_order_value",
    "last_purchase_at",
    "days_since_last_purchase",
    "engagement_score",
    "preferred_categories",
    "open_tickets",
    "lifecycle_stage",
    "first_seen",
    "last_seen",
    "traits",
)
_PREDICTIVE = ("p_alive", "expected_orders", "predicted_clv")


@app.command("profile", rich_help_panel="People")
def profile_command(
    who: Annotated[str, typer.Argument(help="Customer id, email, or kind:value identifier.")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
) -> None:
    """The unified profile: identities, fields with provenance, traits, consent, segments,
    tags and recent events."""
    from personify.privacy.audit import log_action
    from personify.privacy.hashing import optional_key
    from personify.profiles import read_profile
    from personify.session import open_session

    pin_now(now)
    with open_session(project) as session:
        doc = read_profile(session.warehouse, who, session.project)
        log_action(  # personify audit: who read whose profile (a keyed hash)
            session.warehouse,
            action="profile_read",
            actor="cli",
            customer_id=doc["customer_id"],
            key=optional_key(session.project),
        )
    if json:
        emit_json(doc)
        return
    _print(doc)


def _print(doc: dict[str, Any]) -> None:
    out = console()
    out.print(f"[bold]Customer {doc['customer_id']}[/]")
    fields = Table("field", "value", "source", "observed at", "rule", "beat", title="Fields")
    for name, f in doc["fields"].items():
        beat = ", ".join(f"{b['value']} ({b['source']})" for b in f["beat"][:3])
        fields.add_row(name, str(f["value"]), f["source"], str(f["observed_at"]), f["rule"], beat)
    out.print(fields)
    traits = Table("trait", "value", title="Traits")
    for name in _TRAITS:
        traits.add_row(name, str(doc["profile"].get(name)))
    for name in _PREDICTIVE:  # traits.predictive: shown once a fit has filled them
        if doc["profile"].get(name) is not None:
            traits.add_row(name, str(doc["profile"][name]))
    out.print(traits)
    ids = Table("kind", "value", "source", "first seen", "last seen", title="Identities")
    for i in doc["identities"]:
        ids.add_row(i["kind"], i["value"], i["source"], str(i["first_seen"]), str(i["last_seen"]))
    out.print(ids)
    for title, key, cols in (
        ("Consent", "consent", ("purpose", "channel", "status", "source")),
        ("Segments", "segments", ("segment", "entered_at")),
        ("Tags", "tags", ("tag", "rule", "assigned_at")),
        ("Refused merges", "refused_merges", ("kind", "other_kind", "source", "detail")),
        ("Recent events", "recent_events", ("timestamp", "type", "event", "source")),
    ):
        if doc[key]:
            table = Table(*cols, title=title)
            for row in doc[key]:
                table.add_row(*(str(row[c]) for c in cols))
            out.print(table)
    if doc["merged_ids"]:
        out.print(f"Merged ids: {', '.join(doc['merged_ids'])}")
