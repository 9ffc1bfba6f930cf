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

The same events come from ESP webhooks (:mod:`personify.engagement.esp`: SendGrid- and
Postmark-style opens, clicks and deliveries; ``source`` ``email_esp``, ``properties.esp`` the
provider). Their ``message_id`` is derived from the provider's event id, so a redelivered webhook
is one event. An open (or a click) of a message already recorded from the *other* origin — the
pixel and the ESP's report of it, or the other way round — within :data:`SAME_TOUCH_SECONDS` is
the same open and is not stored again (checked when the project has ESP webhooks configured or
the batch holds ESP hits).

The recipient's verdict on a message is recorded the same way (:func:`record_feedback`): an
``Email Unsubscribed`` event when they use the message's unsubscribe link (the token names the
message) or the ESP reports an unsubscribe naming it, an ``Email Marked as Spam`` event when the
ESP relays their spam complaint. Its ``message_id`` is derived from the message and the verdict
alone, so a repeated POST, a redelivered webhook, or the link and the ESP reporting the same
unsubscribe, is one event: a message is unsubscribed from (complained about) once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from personify import clock
from personify.config import Project
from personify.engagement.machine import machine_open, scanner_click
from personify.engagement.tokens import TrackingClaim
from personify.ingest.tracking.normalize import EPOCH, micros
from personify.ingest.tracking.store import NEW, store
from personify.warehouse.base import UNNEST, Warehouse

SOURCE = "email_tracking"
"""``events.source`` of tracking hits."""
ESP_SOURCE = "email_esp"
"""``events.source`` of the opens, clicks and deliveries ESP webhooks report."""
OPENED = "Email Opened"
CLICKED = "Email Link Clicked"
DELIVERED = "Email Delivered"
UNSUBSCRIBED = "Email Unsubscribed"
COMPLAINED = "Email Marked as Spam"
Feedback = Literal["unsubscribed", "complained"]
FEEDBACK_EVENTS: dict[str, str] = {"unsubscribed": UNSUBSCRIBED, "complained": COMPLAINED}
"""The event name of each verdict a recipient can give on a message."""
SAME_TOUCH_SECONDS = 120.0
"""An open (click) of one message from the pixel (redirect) and from an ESP webhook this close
together is one open (click)."""


@dataclass(frozen=True)
class Hit:
    """One request to a tracking route, with a verified claim."""

    claim: TrackingClaim
    at: datetime
    agent: str = ""
    ip: str | None = None
    method: str = "GET"
    esp: str | None = None
    """``None``: the pixel or the redirect; else the ESP whose webhook reported the hit."""
    esp_id: str | None = None
    """The ESP's id of the event (a fingerprint of it when it has none): redeliveries dedup."""
    esp_machine: str | None = None
    """The ESP's own verdict that the hit is a machine's (``esp_machine_open``)."""
    delivered: bool = False
    """An ESP's delivery report (``Email Delivered``) rather than an open or a click."""
    feedback: Feedback | None = None
    """The recipient's verdict (``Email Unsubscribed`` / ``Email Marked as Spam``) rather than
    an open or a click: one event per message and verdict."""

    @property
    def touch(self) -> bool:
        """An open or a click (not a delivery report nor a verdict)."""
        return not self.delivered and self.feedback is None


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


_CHUNK = 500
_KEYS = f"SELECT {UNNEST}"
"""One array parameter of strings as rows: a batch's keys in one statement of fixed text (a
list of ``?`` per key costs the engine more to parse and plan than the lookup itself)."""


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _marks(values: list[str]) -> str:
    return ", ".join("?" for _ in values)


def _messages(
    wh: Warehouse, keys: list[str], recent: datetime | None = None
) -> dict[str, tuple[Any, ...]]:
    """Per message key: (customer id, journey, step, variant, template, sent at). ``recent``:
    the sending instant only when at or after it (``None`` for older ones, which no machine
    check needs: converting an instant to Python is the lookup's largest cost)."""
    sent = "sent_at" if recent is None else "CASE WHEN sent_at >= ? THEN sent_at END"
    params: list[Any] = [keys] if recent is None else [recent, keys]
    rows = wh.fetch(
        f"SELECT idempotency_key, customer_id, journey, step, variant, template, {sent} "
        f"FROM messages WHERE idempotency_key IN ({_KEYS})",
        params,
    )
    return {str(key): tuple(values) for key, *values in rows}


def _identifiers(
    wh: Warehouse, customers: list[str]
) -> dict[str, tuple[str | None, str | None, str | None]]:
    """Per customer: (user id, anonymous id, email) to put on the event so identity resolution
    keeps it theirs."""
    found: dict[str, dict[str, str]] = {}
    if customers:
        for customer_id, kind, value in wh.fetch(
            "SELECT customer_id, kind, min(value) FROM identities "
            f"WHERE customer_id IN ({_KEYS}) "
            "AND kind IN ('user_id', 'anonymous_id', 'email') GROUP BY customer_id, kind",
            [customers],
        ):
            found.setdefault(str(customer_id), {})[str(kind)] = str(value)
        _plain_emails(wh, customers, found)
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for customer_id in customers:
        ids = found.get(customer_id, {})
        if "user_id" in ids:
            out[customer_id] = (ids["user_id"], None, None)
        elif "anonymous_id" in ids:
            out[customer_id] = (None, ids["anonymous_id"], None)
        else:
            out[customer_id] = (None, f"personify:{customer_id}", ids.get("email"))
    return out


def _plain_emails(wh: Warehouse, customers: list[str], found: dict[str, dict[str, str]]) -> None:
    """With encrypted fields the graph keeps an email as its blind index: put the address
    itself back (recovered from the encrypted store), or none — a blind value on the event would
    be blinded again and become an identifier of nobody."""
    from personify.privacy.fields import cipher_of, plain_identifiers

    cipher = cipher_of(wh)
    if cipher is None or not cipher.indexed:
        return
    plains = plain_identifiers(wh, customers)
    for ids in found.values():
        if "email" in ids:
            plain = plains.get(("email", ids["email"]))
            if plain is None:
                del ids["email"]
            else:
                ids["email"] = plain


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def event_id(hit: Hit) -> str:
    """The deterministic ``message_id`` of a hit's event."""
    return _event_id(hit, None if hit.esp is not None else micros(hit.at))


@functools.lru_cache(maxsize=64)
def _minute(minutes: int) -> str:
    """The UTC minute ``minutes`` after 1970 as ``YYYYMMDDTHHMM`` (a batch's hits share a few)."""
    t = EPOCH + timedelta(minutes=minutes)
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}"  # strftime's


def _event_id(hit: Hit, at_us: int | None) -> str:
    """:func:`event_id`, the hit's instant given in µs since 1970 (``None`` for ESP hits)."""
    c = hit.claim
    if hit.feedback is not None:  # once per message, whoever reports it
        said = "\0".join(("feedback", c.key, hit.feedback))
        return "email-" + hashlib.sha256(said.encode("utf-8")).hexdigest()[:32]
    if hit.esp is not None or at_us is None:
        what = "delivered" if hit.delivered else c.kind
        fields = ("esp", hit.esp or "", hit.esp_id or "", c.key, what)
        return "email-" + hashlib.sha256("\0".join(fields).encode("utf-8")).hexdigest()[:32]
    minute = _minute(at_us // 60_000_000)
    parts = (c.kind, c.key, str(c.link), hit.agent, hit.ip or "", hit.method.upper(), minute)
    return "email-" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


def record(wh: Warehouse, project: Project, hit: Hit) -> Recorded:
    """Store the event of ``hit`` (see the module docstring)."""
    return record_many(wh, project, [hit])[0]


def _machine(project: Project, hit: Hit, sent_at: datetime | None) -> str | None:
    settings = project.config.engagement
    if not hit.touch:
        return None
    if hit.esp_machine is not None:
        return hit.esp_machine
    if hit.claim.kind == "open":
        return machine_open(
            hit.agent, hit.ip, sent_at, hit.at, within=settings.machine_open_seconds
        )
    return scanner_click(
        hit.agent, hit.method, sent_at, hit.at, within=settings.scanner_click_seconds
    )


_ENCODER = msgspec.json.Encoder()


def _json(doc: dict[str, Any]) -> str:
    return _ENCODER.encode(doc).decode("utf-8")


_LIBRARY = {"name": "personify-email"}


def _row(
    hit: Hit,
    message: tuple[Any, ...],
    why: str | None,
    ids: tuple[str | None, str | None, str | None],
    received: int,
) -> tuple[Any, ...]:
    """The ``events`` row of ``hit``, in the order of
    :data:`~personify.ingest.tracking.normalize.EVENT_COLUMNS` (as ``normalize`` builds its
    rows; the store reads them by that order); ``message`` as :func:`_messages` reads it."""
    claim = hit.claim
    delivered = not hit.touch
    properties: dict[str, Any] = {
        "message_key": claim.key,
        "journey": message[1],
        "step": message[2],
        "variant": message[3],
        "template": message[4],
    }
    if not delivered:
        properties["machine"] = why is not None
    if why is not None:
        properties["machine_reason"] = why
    if hit.esp is not None:
        properties["esp"] = hit.esp
    click = claim.kind == "click"
    if click and not delivered:
        properties["link_index"] = claim.link
        properties["link_url"] = claim.url
    context: dict[str, Any] = {"userAgent": hit.agent} if hit.agent else {}
    if hit.ip:
        context["ip"] = hit.ip
    context["library"] = _LIBRARY
    user_id, anonymous_id, email = ids
    at_us = micros(hit.at)
    message_id = _event_id(hit, None if hit.esp is not None else at_us)
    return (
        message_id,
        "track",
        _name(hit),
        anonymous_id,
        user_id,
        at_us,
        received,  # now: a redelivery differs, so the store tells it apart
        None,
        SOURCE if hit.esp is None else ESP_SOURCE,
        _json(properties),
        _json(context),
        _json({"email": email}) if email else None,
        None,
        None,
        None,
        int(message_id[6:22], 16) - (1 << 63),
        None,
    )


def _name(hit: Hit) -> str:
    if hit.feedback is not None:
        return FEEDBACK_EVENTS[hit.feedback]
    if hit.delivered:
        return DELIVERED
    return CLICKED if hit.claim.kind == "click" else OPENED


def _same_touches(wh: Warehouse, hits: Sequence[Hit]) -> dict[int, str]:
    """Hits (by position) whose open or click is already recorded from the other origin (or
    earlier in ``hits``) within :data:`SAME_TOUCH_SECONDS`: the message id of that event."""
    wanted = [(j, h) for j, h in enumerate(hits) if h.touch]
    if not wanted:
        return {}
    window = timedelta(seconds=SAME_TOUCH_SECONDS)
    keys = sorted({h.claim.key for _, h in wanted})
    lo = min(h.at for _, h in wanted) - window
    hi = max(h.at for _, h in wanted) + window
    found: dict[tuple[str, str], list[tuple[datetime, str, str]]] = {}
    for chunk in _chunks(keys):
        for key, name, at, source, message_id in wh.fetch(
            "SELECT properties->>'message_key', event, timestamp, source, message_id FROM events "
            "WHERE event IN (?, ?) AND source IN (?, ?) AND timestamp >= ? AND timestamp <= ? "
            f"AND properties->>'message_key' IN ({_marks(chunk)})",
            [OPENED, CLICKED, SOURCE, ESP_SOURCE, lo, hi, *chunk],
        ):
            when = _aware(at)
            if when is not None:
                found.setdefault((str(key), str(name)), []).append(
                    (when, str(source), str(message_id))
                )
    out: dict[int, str] = {}
    for j, hit in wanted:
        name = OPENED if hit.claim.kind == "open" else CLICKED
        source = SOURCE if hit.esp is None else ESP_SOURCE
        mine = event_id(hit)
        same = found.setdefault((hit.claim.key, name), [])
        twin = next(
            (
                m
                for at, s, m in same
                if s != source
                and m != mine
                and abs((at - hit.at).total_seconds()) <= window.seconds
            ),
            None,
        )
        if twin is not None:
            out[j] = twin
        else:
            same.append((hit.at, source, mine))
    return out


def record_many(wh: Warehouse, project: Project, hits: Sequence[Hit]) -> list[Recorded]:
    """:func:`record` for many hits at once: one lookup of their messages and customers, one
    store (what the server does with the hits of a few milliseconds)."""
    settings = project.config.engagement
    within = max(settings.machine_open_seconds, settings.scanner_click_seconds)
    recent = min(h.at for h in hits) - timedelta(seconds=within) if hits else None
    messages = _messages(wh, sorted({h.claim.key for h in hits}), recent)
    known = [
        (i, h, m)
        for i, h in enumerate(hits)
        if (m := messages.get(h.claim.key)) is not None and m[0] == h.claim.customer_id
    ]
    ids = _identifiers(wh, sorted({h.claim.customer_id for _, h, _ in known}))
    results = [Recorded(None)] * len(hits)
    if not known:
        return results
    if project.config.delivery.webhooks or any(h.esp is not None for _, h, _ in known):
        seen = _same_touches(wh, [h for _, h, _ in known])
        for j in sorted(seen, reverse=True):
            i = known[j][0]
            results[i] = Recorded(seen[j], False, None)
            del known[j]
        if not known:
            return results
    reasons = [_machine(project, h, _aware(m[5])) for _, h, m in known]
    received = micros(clock.now())
    rows = [
        _row(h, m, why, ids[h.claim.customer_id], received)
        for (_, h, m), why in zip(known, reasons, strict=True)
    ]
    status = store(wh, rows, owners=[h.claim.customer_id for _, h, _ in known])
    for (i, _, _), row, why, s in zip(known, rows, reasons, status, strict=True):
        results[i] = Recorded(str(row[0]), s == NEW, why)
    return results


def record_feedback(
    wh: Warehouse,
    project: Project,
    message_key: str,
    customer_id: str,
    feedback: Feedback,
    *,
    at: datetime | None = None,
    esp: str | None = None,
) -> Recorded:
    """Record the recipient's verdict on one message (see the module docstring): an
    unsubscribe from its link (``esp`` ``None``, ``source`` ``email_tracking``) or one an ESP
    reported (``email_esp``). Nothing when the message is not one Personify sent to
    ``customer_id``."""
    claim = TrackingClaim("open", message_key, customer_id)
    return record(wh, project, Hit(claim, at or clock.now(), esp=esp, feedback=feedback))
