"""What the console's pages show, gathered from the stages' public functions (run in a worker
thread: they query the warehouse). Each returns plain data for a template; personal data is
masked here, before any template sees it, unless the viewer may see it (:class:`Viewer`)."""

from __future__ import annotations

import html as htmllib
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from personify import clock
from personify.errors import ConfigError, NotFound, PersonifyError
from personify.privacy.audit import log_action
from personify.privacy.hashing import optional_key
from personify.privacy.masking import mask_rows, mask_strict, mask_text
from personify.server.console.auth import Viewer
from personify.session import Session


def show(value: Any) -> str:
    """A value as a page shows it: times in ISO 8601, nothing as an em dash, JSON for the rest."""
    if value is None:
        return "—"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def pairs(doc: dict[str, Any]) -> list[list[str]]:
    """``[[key, shown value], …]`` of a flat mapping."""
    return [[str(k), show(v)] for k, v in doc.items()]


def _audit(
    session: Session, viewer: Viewer, action: str, customer_id: str | None, **detail: Any
) -> None:
    log_action(
        session.warehouse,
        action=action,
        actor=viewer.actor,
        customer_id=customer_id,
        key=optional_key(session.project),
        detail=detail,
    )


# ------------------------------------------------------------------------------------ overview
def overview(session: Session) -> dict[str, Any]:
    """``personify status``'s report, reduced to what a marketer reads: sources, the last run,
    the journeys' 7-day figures, firing alerts, failing segments and problems."""
    from personify.status import status_report

    report = status_report(session)
    run = report.get("last_run")
    return {
        "project": report["project"],
        "now": report["now"],
        "sources": [
            {
                "name": s["name"],
                "kind": s["kind"],
                "last": show(s.get("last_sync_at")),
                "lag": show(s.get("lag_seconds")),
                "quarantined": s.get("quarantined", 0),
            }
            for s in report["sources"]
        ],
        "run": None
        if run is None
        else {
            "status": run["status"],
            "started": show(run["started_at"]),
            "finished": show(run["finished_at"]),
            "errors": [mask_text(e) for e in run["errors"]],
        },
        "journeys": [
            {
                "name": name,
                "sends": row.get("sends", 0),
                "opens": row.get("unique_opens", 0),
                "clicks": row.get("unique_clicks", 0),
                "conversions": row.get("conversions", 0),
                "revenue": show(row.get("revenue")),
                "complaint_rate": show(row.get("complaint_rate")),
                "complaint_high": bool(row.get("complaint_rate_high")),
            }
            for name, row in sorted(report["journeys"].items())
        ],
        "alerts": [
            {"name": a["name"], "signal": a["signal"], "since": show(a["firing_since"])}
            for a in report["alerts"]
            if a["state"] == "firing"
        ],
        "segments_failing": [
            {"segment": f["segment"], "error": mask_text(str(f["error"] or ""))}
            for f in report["segments_failing"]
        ],
        "problems": [mask_text(p) for p in report["problems"]],
        "quarantined": report["quarantine"]["total"],
    }


# ------------------------------------------------------------------------------------ segments
class SegmentsBroken(Exception):
    """The segments folder failed to load (what ``personify segments`` says): the file, the
    line, the error — masked — and its hint."""

    def __init__(self, error: ConfigError, root: Path | None = None) -> None:
        super().__init__(error.message)
        self.file = _relative(error.file, root) or "personify.yml"
        self.line = error.line
        self.error = mask_text(error.message)
        self.hint = mask_text(error.hint or "")

    def page(self) -> dict[str, Any]:
        return {"file": self.file, "line": show(self.line), "error": self.error, "hint": self.hint}


def _relative(file: str | None, root: Path | None) -> str | None:
    """A file as the project names it (``segments/x.sql``), never the server's absolute path
    (a console viewer need not learn where the project lives)."""
    if not file or root is None or not Path(file).is_absolute():
        return file  # (already as the project names it)
    try:
        return Path(file).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(file).name


def _project_segments(session: Session) -> list[Any]:
    """The project's segments, or :class:`SegmentsBroken` when a file of them cannot load."""
    from personify.audiences.stage import project_segments

    try:
        return project_segments(session.project)
    except ConfigError as e:
        raise SegmentsBroken(e, session.project.root) from None


def segments(session: Session) -> list[dict[str, Any]]:
    """Every segment: name, description, refresh, size, sendable size, last refresh. Raises
    :class:`SegmentsBroken`."""
    from personify.audiences.memberships import segment_status

    found = _project_segments(session)
    purpose = session.project.config.audiences.purpose
    status = segment_status(session.warehouse, [s.name for s in found], purpose=purpose)
    return [
        {
            "name": s.name,
            "description": s.description or "",
            "refresh": str(s.refresh),
            "members": status[s.name].members,
            "sendable": status[s.name].sendable,
            "refreshed": show(status[s.name].refreshed_at),
        }
        for s in found
    ]


@dataclass(frozen=True)
class Check:
    """Why one customer is (or is not) in a segment."""

    customer_id: str
    now: bool
    """In it at this instant (the segment's SQL asked for this customer)."""
    entered_at: str | None
    """When the stored membership began (``None``: not a stored member)."""
    columns: list[str]
    row: list[str]
    """The segment's own output row for this customer: the values that put them in it."""


def segment(session: Session, viewer: Viewer, name: str, who: str | None) -> dict[str, Any]:
    """One segment: definition, the SQL as written and as run, stored state, a sample of members
    (masked unless the viewer sees personal data) and, given ``who``, why they are in it.
    Raises NotFound for an unknown segment or customer, :class:`SegmentsBroken` when the
    segments cannot load (not "no segment of that name": it may well be there)."""
    from personify.audiences.memberships import segment_status
    from personify.audiences.stage import preview
    from personify.privacy.fields import decrypt_result

    project, wh = session.project, session.warehouse
    seg = next((s for s in _project_segments(session) if s.name == name), None)
    if seg is None:
        raise NotFound("no segment of that name")
    settings = project.config.audiences
    status = segment_status(wh, [name], purpose=settings.purpose)[name]
    result = preview(wh, seg, sample=settings.sample_size, timeout_s=settings.timeout_seconds)
    rows = decrypt_result(wh, list(result.columns), list(result.rows))
    if not viewer.sees_pii or project.config.privacy.mask_sql:
        rows = mask_rows(list(result.columns), rows, sql=result.sql, dialect=wh.dialect)
    result = replace(result, rows=rows)
    _audit(session, viewer, "segment_preview", None, segment=name, rows=len(rows))
    check = _check(session, viewer, seg, who) if who else None
    return {
        "name": seg.name,
        "description": seg.description or "",
        "refresh": str(seg.refresh),
        "dialect": seg.dialect,
        "file": str(seg.file.relative_to(project.root))
        if seg.file.is_relative_to(project.root)
        else str(seg.file),
        "source": seg.source.strip(),
        "sql": result.sql,
        "size": result.size,
        "members": status.members,
        "sendable": status.sendable,
        "purpose": settings.purpose,
        "refreshed": show(status.refreshed_at),
        "columns": list(result.columns),
        "sample": [[show(v) for v in r] for r in result.rows],
        "masked": not viewer.sees_pii,
        "check": asdict(check) if check is not None else None,
    }


def _check(session: Session, viewer: Viewer, seg: Any, who: str) -> Check:
    from sqlglot import exp

    from personify.audiences.stage import segments_for
    from personify.privacy.fields import decrypt_result

    wh, project = session.warehouse, session.project
    customer_id = find_customer(session, viewer, who)  # NotFound: the caller says so
    timeout = project.config.audiences.timeout_seconds
    inside = bool(segments_for(wh, [seg], customer_id, timeout_s=timeout))
    stored = wh.fetch(
        "SELECT entered_at FROM segment_memberships WHERE segment = ? AND customer_id = ? "
        "AND exited_at IS NULL",
        [seg.name, customer_id],
    )
    query = (
        exp.select("*")
        .from_(seg.members_query().subquery("members"))
        .where(exp.column("customer_id").eq(exp.Literal.string(customer_id)))
        .limit(1)
    )
    sql = wh.render(query)
    with seg.running():
        columns, rows, _ = wh.query_user(sql, timeout_s=timeout, max_rows=1)
    rows = decrypt_result(wh, list(columns), list(rows))
    if not viewer.sees_pii or project.config.privacy.mask_sql:
        rows = mask_rows(list(columns), rows, sql=sql, dialect=wh.dialect)
    _audit(session, viewer, "profile_read", customer_id, segment=seg.name, view="segment_check")
    return Check(
        customer_id=customer_id,
        now=inside,
        entered_at=show(stored[0][0]) if stored else None,
        columns=list(columns),
        row=[show(v) for v in rows[0]] if rows else [],
    )


# ------------------------------------------------------------------------------------ profiles
def find_customer(session: Session, viewer: Viewer, text: str) -> str:
    """The customer id that ``text`` names, as ``viewer`` may look it up: by id, email or
    ``kind:value`` for a viewer who may name people so (:attr:`Viewer.finds_by_identifier`, the
    API's rule); by customer id only for any other —
    an email (or any identifier) is answered NotFound without being looked up, whether someone
    has it or not, so neither the answer nor its timing tells a masked viewer that an address
    belongs to a customer. Raises NotFound."""
    from personify.profiles.read import customer_by_id, resolve_customer

    if viewer.finds_by_identifier:
        return resolve_customer(session.warehouse, text, session.project)
    found = customer_by_id(session.warehouse, text)
    if found is None:
        raise NotFound("no customer has this id")
    return found


def profile(session: Session, viewer: Viewer, key: str) -> dict[str, Any]:
    """``GET /v1/profiles/…``'s document, masked unless the viewer sees personal data; the read
    is audited as ``profile_read`` like ``personify profile``'s. ``key`` is looked up as
    :func:`find_customer` does. Raises NotFound."""
    from personify.profiles import read_profile

    customer_id = find_customer(session, viewer, key)
    doc = read_profile(session.warehouse, customer_id, session.project)
    _audit(session, viewer, "profile_read", doc["customer_id"], view="console")
    if not viewer.sees_pii:
        doc = mask_strict(doc)
    traits = {k: v for k, v in doc["profile"].items() if k not in doc["fields"]}
    return {
        "customer_id": doc["customer_id"],
        "masked": not viewer.sees_pii,
        "fields": [
            {
                "name": name,
                "value": show(f.get("value")),
                "source": show(f.get("source")),
                "observed_at": show(f.get("observed_at")),
                "rule": show(f.get("rule")),
                "beat": ", ".join(
                    f"{show(b.get('value'))} ({show(b.get('source'))})"
                    for b in f.get("beat", [])[:3]
                ),
            }
            for name, f in doc["fields"].items()
        ],
        "traits": pairs(traits),
        "identities": [
            [
                show(i.get("kind")),
                show(i.get("value")),
                show(i.get("source")),
                show(i.get("first_seen")),
                show(i.get("last_seen")),
            ]
            for i in doc["identities"]
        ],
        "merged_ids": [show(m) for m in doc.get("merged_ids", [])],
        "consent": [pairs(c) for c in doc["consent"]],
        "consent_columns": list(doc["consent"][0]) if doc["consent"] else [],
        "segments": [[show(s.get("segment")), show(s.get("entered_at"))] for s in doc["segments"]],
        "tags": [
            [show(t.get("tag")), show(t.get("rule")), show(t.get("assigned_at"))]
            for t in doc["tags"]
        ],
        "events": [
            [
                show(e.get("timestamp")),
                show(e.get("type")),
                show(e.get("event")),
                show(e.get("source")),
            ]
            for e in doc["recent_events"]
        ],
    }


# ------------------------------------------------------------------------------------ previews
def choices(session: Session) -> dict[str, list[str]]:
    """The templates and journeys the preview form offers."""
    from personify.journeys import project_journeys
    from personify.messages import template_store

    return {
        "templates": template_store(session.project).names(),
        "journeys": sorted(j.name for j in project_journeys(session.project)),
    }


@dataclass(frozen=True)
class Shown:
    """One email rendered for a preview."""

    customer_id: str
    subject: str
    html: str
    text: str
    template_file: str
    verdict: str
    outcome: str
    journey: str | None


def without_pixel(project: Any, body: str) -> str:
    """``body`` without its open pixel: a preview in the console is not an open (its pixel is
    signed for no message, but there is no reason to call the tracking route at all)."""
    from personify.engagement.links import base_url

    src = re.escape(htmllib.escape(base_url(project), quote=True))
    return re.sub(rf'<img src="{src}/o/[A-Za-z0-9_.-]+\.gif"[^>]*>', "", body)


class PreviewError(PersonifyError):
    """The preview cannot be made (an unknown template or journey, a journey without the
    customer's cart …); its message is safe to show."""


def render(
    session: Session,
    viewer: Viewer | None,
    template: str,
    who: str,
    journey: str | None,
    *,
    part: str = "page",
) -> Shown:
    """``personify render``'s email for one customer at this instant, and the send gate's verdict
    — writes nothing but the audit entry (when ``viewer`` is given; ``part``: ``page``, the
    preview's page, or ``html``, its frame — each is a read of the email). Raises NotFound,
    PreviewError."""
    from personify.journeys import project_journeys
    from personify.journeys.preview import describe, render_preview, senders, verdict
    from personify.messages import read_customer, template_store

    wh, project = session.warehouse, session.project
    if template not in template_store(project).names():
        raise PreviewError("no template of that name in templates/")
    journeys = project_journeys(project)
    if journey:
        journeys = [j for j in journeys if j.name == journey]
        if not journeys:
            raise PreviewError("no journey of that name in journeys/")
        if not senders(journeys, template):
            raise PreviewError(f"journey {journey} does not send {template}")
    person = read_customer(wh, who, project)
    try:
        shown = render_preview(wh, project, journeys, template, person, {}, now=clock.now())
    except NotFound:
        raise
    except PersonifyError as e:  # its message may name customers: masked
        raise PreviewError(mask_text(str(e))) from None
    message: EmailMessage = shown.envelope.message
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    body = html_part.get_content() if html_part is not None else ""
    if viewer is not None:
        _audit(
            session,
            viewer,
            "email_preview",
            shown.envelope.customer_id,
            template=template,
            part=part,
        )
    return Shown(
        customer_id=shown.envelope.customer_id,
        subject=shown.envelope.subject,
        html=without_pixel(project, body),
        text=text_part.get_content() if text_part is not None else "",
        template_file=shown.file,
        verdict=verdict(shown.gate),
        outcome=shown.gate.outcome,
        journey=describe(shown.found) if shown.found is not None else None,
    )
