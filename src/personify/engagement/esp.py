"""Opens, clicks and deliveries reported by ESP event webhooks → the same engagement events.

``POST /webhooks/esp/{provider}`` (:mod:`personify.server.esp_webhooks`) hands the verified body
here too (bounces and complaints go to :mod:`personify.delivery.suppress`). Recognized:

* **SendGrid** (an array of events): ``event`` ``open`` / ``click`` / ``delivered``;
  ``timestamp`` (Unix seconds), ``useragent``, ``ip``, ``url`` (clicks), ``sg_event_id``,
  ``sg_machine_open`` (``true`` for Apple Mail Privacy Protection prefetches), and the
  ``custom_args`` the ESP transport sent, echoed as top-level fields: ``personify_key`` (the
  message's idempotency key) and ``customer_id``.
* **Postmark** (one object, or an array): ``RecordType`` ``Open`` / ``Click`` / ``Delivery``;
  ``ReceivedAt`` / ``DeliveredAt``, ``UserAgent``, ``Geo.IP``, ``OriginalLink`` (clicks),
  ``MachineOpen`` (when the account flags machine opens), ``Metadata.personify_key`` and
  ``Metadata.customer_id``.

Each becomes an ``Email Opened`` / ``Email Link Clicked`` / ``Email Delivered`` event through
:func:`personify.engagement.record.record_many` — tied to the message, journey, step, variant and
customer like a pixel or redirect hit, machine opens and scanner clicks flagged the same way (the
ESP's own machine flag wins) — with a ``message_id`` derived from the provider's event id (a
fingerprint of the event when the provider gives none): a redelivered webhook stores nothing new,
and an open the pixel already recorded (within a couple of minutes) is not counted twice. An
event without ``personify_key``, or naming a message Personify did not send, records nothing.

Spam complaints (SendGrid ``spamreport``, Postmark ``SpamComplaint``) and unsubscribes
(SendGrid ``unsubscribe`` / ``group_unsubscribe``, Postmark ``SubscriptionChange`` with
``SuppressSending``) naming a message also become an ``Email Marked as Spam`` /
``Email Unsubscribed`` event for it (:func:`personify.engagement.record.record_feedback`'s kind:
one per message and verdict, whichever report comes first) — besides the suppression
:mod:`personify.delivery.suppress` writes for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from personify import clock
from personify.config import Project
from personify.engagement.record import Hit, Recorded, record_many
from personify.engagement.tokens import TrackingClaim, safe_target
from personify.warehouse.base import Warehouse

What = Literal["open", "click", "delivered", "complained", "unsubscribed"]
ESP_MACHINE = "esp_machine_open"
"""``machine_reason`` of an open the ESP itself flags as a machine's."""


@dataclass(frozen=True)
class EspTouch:
    """One open, click, delivery, complaint or unsubscribe an ESP reported."""

    what: What
    key: str
    """The message's idempotency key (``personify_key``)."""
    customer_id: str | None
    at: datetime
    esp_id: str
    agent: str = ""
    ip: str | None = None
    url: str | None = None
    machine: bool = False


@dataclass(frozen=True)
class EspEngagement:
    """What one webhook's opens, clicks and deliveries did."""

    touches: int
    """Opens, clicks and deliveries in the payload (with a ``personify_key``)."""
    recorded: int
    """New events stored."""
    repeated: int
    """Already stored (a redelivery, or the pixel/redirect saw the same touch)."""
    unknown: int
    """Naming no message Personify sent."""
    feedback: int = 0
    """Of ``touches``: complaints and unsubscribes (the rest are opens, clicks, deliveries)."""
    feedback_recorded: int = 0
    """Of ``recorded``: complaints and unsubscribes."""
    feedback_repeated: int = 0
    """Of ``repeated``: complaints and unsubscribes."""


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    return None


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


_SENDGRID: dict[str, What] = {
    "open": "open",
    "click": "click",
    "delivered": "delivered",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
_POSTMARK: dict[str, What] = {
    "Open": "open",
    "Click": "click",
    "Delivery": "delivered",
    "SpamComplaint": "complained",
}
_POSTMARK_STAMP = {
    "delivered": "DeliveredAt",
    "complained": "BouncedAt",
    "unsubscribed": "ChangedAt",
}
FEEDBACK: frozenset[What] = frozenset({"complained", "unsubscribed"})


def _sendgrid(event: Mapping[str, Any]) -> EspTouch | None:
    what = _SENDGRID.get(str(event.get("event", "")))
    key = _text(event.get("personify_key"))
    if what is None or key is None:
        return None
    at = _instant(event.get("timestamp")) or clock.now()
    url = _text(event.get("url")) if what == "click" else None
    return EspTouch(
        what,
        key,
        _text(event.get("customer_id")),
        at,
        _text(event.get("sg_event_id"))
        or _fingerprint(what, key, event.get("timestamp"), event.get("sg_message_id"), url),
        str(event.get("useragent") or "")[:512],
        _text(event.get("ip")),
        url if url and safe_target(url) else None,
        event.get("sg_machine_open") is True,
    )


def _postmark(event: Mapping[str, Any]) -> EspTouch | None:
    record = str(event.get("RecordType", ""))
    what = _POSTMARK.get(record)
    if record == "SubscriptionChange" and event.get("SuppressSending") is True:
        what = "unsubscribed"
    elif event.get("Type") == "SpamComplaint":  # as delivery.events reads it
        what = "complained"
    meta = event.get("Metadata")
    meta = meta if isinstance(meta, dict) else {}
    key = _text(meta.get("personify_key"))
    if what is None or key is None:
        return None
    stamp = event.get(_POSTMARK_STAMP.get(what, "ReceivedAt"))
    at = _instant(stamp) or clock.now()
    geo = event.get("Geo")
    url = _text(event.get("OriginalLink")) if what == "click" else None
    return EspTouch(
        what,
        key,
        _text(meta.get("customer_id")),
        at,
        _text(event.get("ID"))
        or _fingerprint(what, key, stamp, event.get("MessageID"), url, event.get("UserAgent")),
        str(event.get("UserAgent") or "")[:512],
        _text(geo.get("IP")) if isinstance(geo, dict) else None,
        url if url and safe_target(url) else None,
        event.get("MachineOpen") is True,
    )


def parse_touches(provider: str, body: bytes) -> list[EspTouch]:
    """The opens, clicks and deliveries of a webhook body (already verified and known to be a
    JSON object or array of objects); everything else is left out."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    items = doc if isinstance(doc, list) else [doc]
    out: list[EspTouch] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        postmark = provider == "postmark" or (provider == "standard" and "RecordType" in item)
        found = _postmark(item) if postmark else _sendgrid(item)
        if found is not None:
            out.append(found)
    return out


def _owners(wh: Warehouse, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        rows = wh.fetch(
            "SELECT idempotency_key, customer_id FROM messages WHERE idempotency_key IN "
            f"({', '.join('?' for _ in chunk)})",
            chunk,
        )
        out.update({str(k): str(c) for k, c in rows})
    return out


def record_touches(
    wh: Warehouse, project: Project, provider: str, touches: Sequence[EspTouch]
) -> EspEngagement:
    """Store the events of ``touches`` (see the module docstring)."""
    if not touches:
        return EspEngagement(0, 0, 0, 0)
    owners = _owners(wh, sorted({t.key for t in touches}))
    hits: list[Hit] = []
    for t in touches:
        customer = t.customer_id or owners.get(t.key) or ""
        if t.what == "complained" or t.what == "unsubscribed":
            claim = TrackingClaim("open", t.key, customer)
            hits.append(Hit(claim, t.at, esp=provider, esp_id=t.esp_id, feedback=t.what))
            continue
        kind: Literal["open", "click"] = "click" if t.what == "click" else "open"
        claim = TrackingClaim(kind, t.key, customer, 0 if kind == "click" else None, t.url)
        hits.append(
            Hit(
                claim,
                t.at,
                t.agent,
                t.ip,
                "GET",
                esp=provider,
                esp_id=t.esp_id,
                esp_machine=ESP_MACHINE if t.machine and t.what == "open" else None,
                delivered=t.what == "delivered",
            )
        )
    done: list[Recorded] = record_many(wh, project, hits)
    recorded = sum(1 for r in done if r.new)
    unknown = sum(1 for r in done if r.message_id is None)
    said = [r for r, t in zip(done, touches, strict=True) if t.what in FEEDBACK]
    said_new = sum(1 for r in said if r.new)
    said_known = sum(1 for r in said if r.message_id is not None)
    return EspEngagement(
        len(touches),
        recorded,
        len(touches) - recorded - unknown,
        unknown,
        len(said),
        said_new,
        said_known - said_new,
    )
