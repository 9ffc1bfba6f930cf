"""Consent sent with tracking events (``context.consent``), read set-wise after identity.

The privacy stage reads the events stored since its last pass that carry ``context.consent``
and whose person is known (``events.customer_id``, filled by identity resolution), and records
each change with :func:`~personify.privacy.consent.record` — the event time as the time of the
change, ``context.ip`` / ``context.userAgent`` / the page as proof. Anonymous-only events are
kept waiting (:data:`PENDING`): when a later pass finds them linked to a person, their consent
is recorded then, as of the event's time. Accepted shapes::

    {"categoryPreferences": {"email_marketing": true, "profiling": false}}   # Segment's
    {"email_marketing": "granted", "sms_marketing": {"status": "revoked", "channel": "sms"}}
    [{"purpose": "email_marketing", "status": "granted", "form": "footer",
      "confirmed_at": "2026-01-02T10:00:00Z"}]

A purpose without a channel is about ``email``. Unreadable entries are ignored.

**Global Privacy Control.** A request with the ``Sec-GPC: 1`` header (the tracking API stores it
as ``context.gpc: true``), or an event whose ``context.gpc`` is ``true`` (an SDK reading
``navigator.globalPrivacyControl``), is a CCPA/CPRA opt-out of sale and sharing: ``data_sharing``
is recorded ``revoked`` (proof: form ``Global Privacy Control``, the event's IP and user agent)
— once, while it is not already revoked. It changes no other purpose.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from personify.identity import state
from personify.privacy.consent import DATA_SHARING, record
from personify.privacy.crypto import KeyRing
from personify.warehouse.base import UNNEST, Warehouse

WATERMARK = "privacy.consent_events"
PENDING = "privacy.consent_pending"
"""identity_state key: message ids (one a line) of anonymous events with consent or GPC, read
again at each pass until identity links them to a person (an anonymous visitor's GPC signal
counts once they sign up, even in a later pass)."""
MAX_PENDING = 10_000
"""Anonymous events kept waiting at most (the most recent; older ones are dropped)."""


@dataclass(frozen=True)
class Change:
    purpose: str
    channel: str
    status: str
    proof: dict[str, Any]


def _status(value: object) -> str | None:
    if isinstance(value, bool):
        return "granted" if value else "revoked"
    if isinstance(value, str):
        v = value.strip().lower()
        if v in {"granted", "grant", "opt_in", "opted_in", "yes", "true", "subscribed"}:
            return "granted"
        if v in {
            "revoked",
            "revoke",
            "denied",
            "opt_out",
            "opted_out",
            "no",
            "false",
            "unsubscribed",
        }:
            return "revoked"
    return None


def _item(purpose: object, value: object) -> Change | None:
    if not isinstance(purpose, str) or not purpose.strip():
        return None
    extra: dict[str, Any] = {}
    channel = "email"
    if isinstance(value, Mapping):
        status = _status(value.get("status", value.get("granted")))
        channel = str(value.get("channel") or "email")
        for key, alias in (("form", "form"), ("confirmed_at", "confirmedAt")):
            found = value.get(key, value.get(alias))
            if found is not None:
                extra[key] = found
    else:
        status = _status(value)
    if status is None:
        return None
    return Change(purpose.strip(), channel, status, extra)


def changes(consent: object) -> list[Change]:
    """The consent changes a ``context.consent`` value states (see the module doc)."""
    found: list[Change | None] = []
    if isinstance(consent, list):
        for entry in consent:
            if isinstance(entry, Mapping):
                found.append(_item(entry.get("purpose"), entry))
    elif isinstance(consent, Mapping):
        prefs = consent.get("categoryPreferences")
        if isinstance(prefs, Mapping):
            found += [_item(k, v) for k, v in prefs.items()]
        found += [_item(k, v) for k, v in consent.items() if k != "categoryPreferences"]
    return [c for c in found if c is not None]


def _proof(context: Mapping[str, Any], change: Change) -> dict[str, Any]:
    proof: dict[str, Any] = {}
    if context.get("ip"):
        proof["ip"] = context["ip"]
    if context.get("userAgent"):
        proof["user_agent"] = context["userAgent"]
    page = context.get("page")
    if isinstance(page, Mapping) and page.get("url"):
        proof["form"] = page["url"]
    proof.update(change.proof)
    return proof


def _rows(wh: Warehouse) -> Iterator[tuple[str, str, datetime, str, str]]:
    """The events with consent or GPC whose person is known: those stored since the last pass,
    and the earlier anonymous ones (:data:`PENDING`) that identity has linked since."""
    upto = state.latest(wh, "events")
    if upto is None:
        return
    after = state.get_instant(wh, WATERMARK)
    where, params = "received_at <= ?", [upto]
    if after is not None:
        where, params = "received_at >= ? AND received_at <= ?", [after, upto]
    waiting = [m for m in (state.get(wh, PENDING) or "").split("\n") if m]
    signal = (
        "(json_extract(context, '$.consent') IS NOT NULL "
        "OR json_extract(context, '$.gpc') IS NOT NULL)"
    )
    rows = wh.fetch(
        "SELECT customer_id, source, timestamp, message_id, CAST(context AS VARCHAR) FROM events "
        f"WHERE (({where}) OR message_id IN (SELECT {UNNEST})) AND {signal} "
        "ORDER BY timestamp, message_id",
        [*params, waiting],
    )
    pending = [str(r[3]) for r in rows if r[0] is None][-MAX_PENDING:]
    yield from (r for r in rows if r[0] is not None)
    state.put(wh, WATERMARK, upto.isoformat())
    if pending or waiting:
        state.put(wh, PENDING, "\n".join(pending))


GPC_FORM = "Global Privacy Control"


def _gpc(value: object) -> bool:
    return value is True or value == 1 or (isinstance(value, str) and value.strip() == "1")


def _revoked(wh: Warehouse, customer_id: str) -> bool:
    """Whether ``data_sharing`` is already revoked for ``customer_id`` (a repeated GPC signal on
    every page view records nothing more)."""
    status = wh.scalar(
        "SELECT status FROM consents WHERE customer_id = ? AND purpose = ? AND channel = 'email'",
        [customer_id, DATA_SHARING],
    )
    return bool(status == "revoked")


def apply_tracking_consent(wh: Warehouse, cipher: KeyRing | None = None) -> int:
    """Record the consent changes of events stored since the last pass; returns how many
    changed a current state (proof encrypted with ``cipher``, when given)."""
    changed = 0
    for customer_id, source, at, message_id, text in list(_rows(wh)):
        try:
            context = msgspec.json.decode(text)
        except msgspec.DecodeError:
            continue
        if not isinstance(context, dict):
            continue
        found = changes(context.get("consent"))
        if _gpc(context.get("gpc")) and not _revoked(wh, customer_id):
            found.append(Change(DATA_SHARING, "email", "revoked", {"form": GPC_FORM}))
        for change in found:
            proof = _proof(context, change) | {"message_id": message_id}
            changed += record(
                wh,
                subject=customer_id,
                purpose=change.purpose,
                channel=change.channel,
                status=change.status,
                source=source,
                at=at,
                proof=proof,
                cipher=cipher,
            )
    return changed
