"""A tracking hit → one ``Email Opened`` / ``Email Link Clicked`` event in ``events``.

The event goes through the tracking store (:func:`personify.ingest.tracking.store.store`, the
same path as the tracking API's: dedup on ``message_id`` forever). Its ``message_id`` is derived
from the message, the link, the client (user agent and address) and the minute, so a client
re-fetching the pixel or re-following a link within the same minute is one event while every
later open is kept. It is tied to the message (``properties.message_key``), its journey, step,
variant and template (read from ``messages`` by the token's key, so the token stays short) and
to the customer: ``customer_id`` is set at once, and the event carries the customer's ``userId``
(or an ``anonymousId`` tied to their email in ``traits``) so identity resolution keeps it theirs.
A machine open or scanner click (:mod:`personify.engagement.machine`) is stored with
``properties.machine = true``. A token whose message is not in ``messages`` (a preview, an
erased person) records nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from personify.config import Project
from personify.engagement.machine import machine_open, scanner_click
from personify.engagement.tokens import TrackingClaim
from personify.ingest.tracking.normalize import EVENT_COLUMNS, micros
from personify.ingest.tracking.store import NEW, store
from personify.warehouse.base import Warehouse

SOURCE = "email_tracking"
"""``events.source`` of tracking hits."""
OPENED = "Email Opened"
CLICKED = "Email Link Clicked"


@dataclass(frozen=True)
class Hit:
    """One request to a tracking route, with a verified claim."""

    claim: TrackingClaim
    at: datetime
    agent: str = ""
    ip: str | None = None
    method: str = "GET"


@dataclass(frozen=True)
class Recorded:
    """What became of a hit."""

    message_id: str | None
    """The event's ``message_id``; ``None`` when nothing was recorded (no such message)."""
    new: bool = False
    """``False``: the same hit was recorded already (or nothing was)."""
    machine: str | None = None
    """Why it is a machine's (``apple_privacy_proxy``, ``too_soon``, ``head_request``,
    ``scanner_agent``), or ``None`` for a person's."""


def _message(wh: Warehouse, key: str) -> dict[str, Any] | None:
    rows = wh.fetch(
        "SELECT customer_id, journey, step, variant, template, sent_at FROM messages "
        "WHERE idempotency_key = ?",
        [key],
    )
    if not rows:
        return None
    names = ("customer_id", "journey", "step", "variant", "template", "sent_at")
    return dict(zip(names, rows[0], strict=True))


def _identifiers(wh: Warehouse, customer_id: str) -> tuple[str | None, str | None, str | None]:
    """(user id, anonymous id, email) to put on the event so identity keeps it the customer's."""
    rows = wh.fetch(
        "SELECT kind, min(value) FROM identities WHERE customer_id = ? "
        "AND kind IN ('user_id', 'anonymous_id', 'email') GROUP BY kind",
        [customer_id],
    )
    found = {str(k): str(v) for k, v in rows}
    if "user_id" in found:
        return found["user_id"], None, None
    if "anonymous_id" in found:
        return None, found["anonymous_id"], None
    return None, f"personify:{customer_id}", found.get("email")


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def event_id(hit: Hit) -> str:
    """The deterministic ``message_id`` of a hit's event."""
    c = hit.claim
    minute = hit.at.astimezone(UTC).strftime("%Y%m%dT%H%M")
    parts = (c.kind, c.key, str(c.link), hit.agent, hit.ip or "", hit.method.upper(), minute)
    return "email-" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


def record(wh: Warehouse, project: Project, hit: Hit) -> Recorded:
    """Store the event of ``hit`` (see the module docstring)."""
    claim = hit.claim
    message = _message(wh, claim.key)
    if message is None or message["customer_id"] != claim.customer_id:
        return Recorded(None)
    settings = project.config.engagement
    sent_at = _aware(message["sent_at"])
    if claim.kind == "open":
        why = machine_open(hit.agent, hit.ip, sent_at, hit.at, within=settings.machine_open_seconds)
    else:
        why = scanner_click(
            hit.agent, hit.method, sent_at, hit.at, within=settings.scanner_click_seconds
        )
    properties: dict[str, Any] = {
        "message_key": claim.key,
        "journey": message["journey"],
        "step": message["step"],
        "variant": message["variant"],
        "template": message["template"],
        "machine": why is not None,
    }
    if why is not None:
        properties["machine_reason"] = why
    if claim.kind == "click":
        properties["link_index"] = claim.link
        properties["link_url"] = claim.url
    user_id, anonymous_id, email = _identifiers(wh, claim.customer_id)
    context = {"userAgent": hit.agent, "ip": hit.ip, "library": {"name": "personify-email"}}
    message_id = event_id(hit)
    at = micros(hit.at)
    values: dict[str, Any] = {
        "message_id": message_id,
        "type": "track",
        "event": OPENED if claim.kind == "open" else CLICKED,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "timestamp": at,
        "received_at": at,
        "sent_at": None,
        "source": SOURCE,
        "properties": json.dumps(properties, separators=(",", ":")),
        "context": json.dumps({k: v for k, v in context.items() if v}, separators=(",", ":")),
        "traits": json.dumps({"email": email}) if email else None,
        "name": None,
        "group_id": None,
        "previous_id": None,
        "payload_hash": int(message_id[6:22], 16) - (1 << 63),
        "plan_violations": None,
    }
    row = tuple(values[c] for c in EVENT_COLUMNS)
    status = store(wh, [row])
    if status[0] == NEW:
        wh.execute(
            "UPDATE events SET customer_id = ? WHERE message_id = ? AND customer_id IS NULL",
            [claim.customer_id, message_id],
        )
    return Recorded(message_id, status[0] == NEW, why)
