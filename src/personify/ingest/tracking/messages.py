"""The Segment message format, as msgspec Structs decoded in one typed pass.

The shapes follow the Segment spec (https://segment.com/docs/connections/spec/common/):
``type``, ``messageId``, ``anonymousId``, ``userId``, ``timestamp``, ``originalTimestamp``,
``sentAt``, ``context``, ``properties``, ``traits``, ``integrations``, and the per-type fields
(``event``, ``name``, ``category``, ``groupId``, ``previousId``). Unknown keys are ignored.

A batch body is decoded as an :class:`Envelope` whose events stay :class:`msgspec.Raw` byte slices:
each event is then measured (the 32 KB limit), decoded and validated on its own, so one bad event
never fails its neighbours, and its exact bytes are at hand for the quarantine.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
"""The message types, as in ``type`` and in the endpoint paths (``/v1/track`` …)."""
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "track": ("event",),
    "group": ("groupId",),
    "alias": ("userId", "previousId"),
}
"""The fields a message of each type needs besides ``messageId`` (else ``missing_required``), in
the order they are checked; every type but ``alias`` also needs a ``userId`` or an ``anonymousId``
(else ``missing_identity``). The tracking API (:mod:`~.normalize`) and the file importer's row
rules (:mod:`personify.ingest.rules`) both apply this table."""


def needs(kind: str, field: str) -> str:
    """Why a message lacking a field of :data:`REQUIRED` is refused: ``an alias call needs
    userId``."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} call needs {field}"


OBJECTS: Final = ("properties", "traits", "context")
"""The free-form parts: JSON objects when present (``null`` counts as absent)."""

MAX_EVENT_BYTES: Final = 32 * 1024
"""Largest event accepted (its JSON text, after decompression)."""
MAX_REQUEST_BYTES: Final = 500 * 1024
"""Largest request body accepted (compressed as sent, and again once decompressed)."""

Id = str | int
"""Ids may come as numbers from some SDKs; they are stored as text."""


class Message(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """One Segment message (any type)."""

    type: str | None = None
    """``track``, ``identify``, ``page``, ``screen``, ``group`` or ``alias`` (set by the
    single-event endpoints, required in a batch)."""
    message_id: Id | None = None
    """Unique id of the message: the idempotency key, kept forever (``events.message_id``)."""
    user_id: Id | None = None
    """The known user, if any."""
    anonymous_id: Id | None = None
    """The device or browser, until the user is known (one of the two ids is required)."""
    event: str | None = None
    """``track``: the event name (``Product Added``)."""
    name: str | None = None
    """``page``/``screen``: the page or screen name."""
    category: str | None = None
    """``page``: the page category (kept in ``properties.category``)."""
    properties: dict[str, Any] | None = None
    """``track``/``page``/``screen``: free-form properties."""
    traits: dict[str, Any] | None = None
    """``identify``/``group``: traits of the user or group."""
    context: dict[str, Any] | None = None
    """ip, userAgent, page, campaign (UTM), locale, library …"""
    integrations: dict[str, Any] | None = None
    """Destinations to enable or disable (kept in the payload hash, not stored)."""
    timestamp: str | None = None
    """When it happened, by the sender's clock (ISO 8601)."""
    original_timestamp: str | None = None
    """Same as ``timestamp`` when the sender sends both (analytics.js)."""
    sent_at: str | None = None
    """When the sender sent it, by the sender's clock (ISO 8601)."""
    group_id: Id | None = None
    """``group``: the group (account, company)."""
    previous_id: Id | None = None
    """``alias``: the id being aliased to ``userId``."""


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """A message as the hot path decodes it: the free-form objects stay raw JSON text (stored as
    sent, decoded only when a rule needs to look inside). Same fields as :class:`Message`."""

    type: str | None = None
    message_id: Id | None = None
    user_id: Id | None = None
    anonymous_id: Id | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: msgspec.Raw = msgspec.Raw()
    """Raw JSON; empty when absent."""
    traits: msgspec.Raw = msgspec.Raw()
    context: msgspec.Raw = msgspec.Raw()
    timestamp: str | None = None
    original_timestamp: str | None = None
    sent_at: str | None = None
    group_id: Id | None = None
    previous_id: Id | None = None


class Envelope(msgspec.Struct, rename="camel", kw_only=True):
    """A ``/v1/batch`` body: the events plus fields that apply to all of them."""

    batch: list[msgspec.Raw]
    """The events, each decoded on its own."""
    sent_at: str | None = None
    """When the batch was sent (used for events without their own ``sentAt``)."""
    context: dict[str, Any] | None = None
    """Context merged under each event's own context."""
    integrations: dict[str, Any] | None = None
    """Integrations merged under each event's own."""
    write_key: str | None = None
    """The write key, for senders that cannot set an ``Authorization`` header (``sendBeacon``)."""


class KeyOnly(msgspec.Struct, rename="camel"):
    """Just the ``writeKey`` of a single-event body (the rest is decoded as a :class:`Message`)."""

    write_key: str | None = None


class Accepted(msgspec.Struct, frozen=True):
    """Every event of the request was stored (or was already stored)."""

    success: bool = True
    """Always true."""


class PlanViolation(msgspec.Struct, frozen=True):
    """One way an event breaks its tracking-plan schema."""

    pointer: str
    """JSON pointer to the value in the request body (``/batch/3/properties/price``; for a
    missing required one, where it belongs)."""
    message: str
    """What the schema expects (``is required``, ``must match the schema's type ("number")``)."""


class EventError(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One event that was not stored as sent."""

    index: int
    """Its position in ``batch`` (0 for a single-event request)."""
    pointer: str
    """JSON pointer to the offending value in the request body (``/batch/3/userId``)."""
    reason: str
    """Machine-readable reason (``missing_required``, ``tracking_plan_violation`` …)."""
    message: str
    """What is wrong, for people."""
    outcome: str
    """``quarantined`` (kept in ``quarantine``; fix and ``personify quarantine replay``) or
    ``rejected`` (not kept: the sender must fix it)."""
    message_id: str | None = None
    """Its ``messageId``, when it had a readable one."""
    violations: list[PlanViolation] | None = None
    """``tracking_plan_violation``: every violation of the schema (``pointer`` is the first)."""


class BatchResult(msgspec.Struct, frozen=True, rename="camel"):
    """Per-event results: some events were quarantined or rejected.

    ``accepted + quarantined + rejected == received``; ``duplicates`` are accepted events whose
    ``messageId`` was already stored (nothing new was stored for them)."""

    success: bool
    """False: not every event was accepted."""
    received: int
    accepted: int
    duplicates: int
    quarantined: int
    rejected: int
    errors: list[EventError]
    """One entry per quarantined or rejected event."""


class ErrorInfo(msgspec.Struct, frozen=True):
    """What went wrong (the shape of every error body)."""

    code: str
    message: str


class EventRefused(msgspec.Struct, frozen=True, rename="camel"):
    """A single-event request whose event was quarantined: 400 with the error and the result."""

    error: ErrorInfo
    received: int
    accepted: int
    duplicates: int
    quarantined: int
    rejected: int
    errors: list[EventError]


class BatchBody(msgspec.Struct, rename="camel", kw_only=True):
    """A ``/v1/batch`` body as documented (the server decodes it as :class:`Envelope`)."""

    batch: list[Message]
    """Up to 500 KB of events, each at most 32 KB, each with its own ``type``."""
    sent_at: str | None = None
    """When the batch was sent, by the sender's clock."""
    context: dict[str, Any] | None = None
    """Merged under each event's own context."""
    integrations: dict[str, Any] | None = None
    """Merged under each event's own integrations."""
    write_key: str | None = None
    """The write key, when no ``Authorization`` header can be sent."""
