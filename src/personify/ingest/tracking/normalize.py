"""One event: its raw bytes in, a row for ``events`` or a :class:`Problem` out.

The rules, in order (the first failing one decides):

==========================  =======================================================  ===========
reason                      when                                                     outcome
==========================  =======================================================  ===========
``event_too_large``         the event's JSON text is over 32 KB                      rejected
``invalid_value``           a string holds a NUL character (``\\u0000``)               quarantined
``malformed_json``          not decodable JSON (lone surrogate escapes, too deep)    quarantined
``invalid_type``            not an object, a field of the wrong type, unknown type   quarantined
``missing_required``        no ``messageId``; ``event`` (track), ``groupId`` (group), quarantined
                            ``userId``/``previousId`` (alias)
``missing_identity``        neither ``userId`` nor ``anonymousId`` (all but alias)   quarantined
``invalid_timestamp``       a timestamp that is not ISO 8601, or out of range        quarantined
``tracking_plan_violation`` the tracking plan's schema refuses it (``enforce`` mode) quarantined
==========================  =======================================================  ===========

Clock skew: a sender's clock may be wrong, but the *difference* between when it says the event
happened and when it says it sent it is right. So, as Segment does,
``timestamp = receivedAt − (sentAt − originalTimestamp)`` when both are given (never later than
``receivedAt``); the sender's timestamp as given when there is no ``sentAt``; ``receivedAt`` when
there is no timestamp at all.

The payload hash is a 64-bit BLAKE2b of the event's canonical JSON (sorted keys, batch-level
context merged in, ``sentAt`` left out — SDKs re-stamp it on retries): equal for a resend, different
for another event reusing a ``messageId``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from personify.ingest.tracking.messages import MAX_EVENT_BYTES, TYPES, Message
from personify.ingest.tracking.plan import Plan

EVENT_TOO_LARGE: Final = "event_too_large"
INVALID_VALUE: Final = "invalid_value"
MALFORMED_JSON: Final = "malformed_json"
INVALID_TYPE: Final = "invalid_type"
MISSING_REQUIRED: Final = "missing_required"
MISSING_IDENTITY: Final = "missing_identity"
INVALID_TIMESTAMP: Final = "invalid_timestamp"
PLAN_VIOLATION: Final = "tracking_plan_violation"
CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"

REASONS: Final[dict[str, str]] = {
    EVENT_TOO_LARGE: "the event's JSON is over 32 KB (rejected, not kept)",
    INVALID_VALUE: "a string holds a NUL character",
    MALFORMED_JSON: "the event is not decodable JSON",
    INVALID_TYPE: "not an object, a field of the wrong type, or an unknown message type",
    MISSING_REQUIRED: "a field its type requires is missing or empty",
    MISSING_IDENTITY: "neither userId nor anonymousId",
    INVALID_TIMESTAMP: "a timestamp that is not ISO 8601 or is out of range",
    PLAN_VIOLATION: "the tracking plan's JSON Schema for the event refuses it",
    CONFLICTING_DUPLICATE: "a messageId already stored with another payload (the first is kept)",
}
"""The tracking API's quarantine reasons."""

EVENT_COLUMNS: Final = (
    "message_id",
    "type",
    "event",
    "anonymous_id",
    "user_id",
    "timestamp",
    "received_at",
    "sent_at",
    "source",
    "properties",
    "context",
    "traits",
    "name",
    "group_id",
    "previous_id",
    "payload_hash",
    "plan_violations",
)
"""The ``events`` columns a row fills, in the order of its tuple (timestamps as µs since 1970)."""

Row = tuple[Any, ...]
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_AT: Final = re.compile(r" - at `\$(.*)`$")
_SEGMENT: Final = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Message)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one event was not accepted."""

    index: int
    """Position in the request (0 for a single event)."""
    pointer: str
    """JSON pointer inside the event (``/userId``; empty: the event itself)."""
    reason: str
    """One of :data:`REASONS`."""
    message: str
    """For people; never quotes the offending value (it may be personal data)."""
    message_id: str | None = None
    rejected: bool = False
    """Rejected (not kept) rather than quarantined."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """What every event of one request shares."""

    source: str
    received_at: datetime
    sent_at: datetime | None = None
    """The batch's ``sentAt``, for events without their own."""
    context: dict[str, Any] | None = None
    """The batch's context, merged under each event's."""
    integrations: dict[str, Any] | None = None
    ip: str | None = None
    """The sender's address, set as ``context.ip`` when the event has none."""
    kind: str | None = None
    """The type a single-event endpoint imposes (``/v1/track`` → ``track``)."""
    plan: Plan | None = None
    warn_only: bool = False
    """``warn`` mode: plan violations are stored in ``plan_violations`` instead of quarantined."""


def micros(value: datetime) -> int:
    """Microseconds since 1970 (UTC)."""
    return (value - EPOCH) // _US


def parse_time(text: str) -> datetime:
    """An ISO 8601 instant (a date alone is midnight; no zone means UTC). Raises ``ValueError``."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def pointer_of(error: msgspec.ValidationError) -> str:
    """The JSON pointer of a msgspec validation error (``$.userId`` → ``/userId``)."""
    m = _AT.search(str(error))
    if not m:
        return ""
    parts: list[str] = []
    for name, item in _SEGMENT.findall(m.group(1)):
        if item == "...":
            break  # msgspec does not name dict keys: point at the dict
        parts.append(name or item)
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def payload_hash(message: Message) -> int:
    """The 64-bit hash telling a resend from a different event with the same id."""
    digest = hashlib.blake2b(_canonical.encode(message), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _text(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def decode(raw: bytes, index: int) -> Message | Problem:
    """The event decoded, or the problem with its bytes."""
    if len(raw) > MAX_EVENT_BYTES:
        msg = f"the event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}"
        return Problem(index, "", EVENT_TOO_LARGE, msg, rejected=True)
    if b"\\u0000" in raw:
        return Problem(index, "", INVALID_VALUE, "text may not contain NUL characters (\\u0000)")
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as e:
        detail = str(e).split(" - at ", 1)[0]
        return Problem(index, pointer_of(e), INVALID_TYPE, detail)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        return Problem(index, "", MALFORMED_JSON, f"not decodable JSON ({type(e).__name__})")


def _required(message: Message, kind: str, index: int, message_id: str) -> Problem | None:
    user, anonymous = _text(message.user_id), _text(message.anonymous_id)
    missing: str | None = None
    if kind == "track" and not message.event:
        missing = "event"
    elif kind == "group" and _text(message.group_id) is None:
        missing = "groupId"
    elif kind == "alias":
        missing = (
            "userId"
            if user is None
            else "previousId"
            if _text(message.previous_id) is None
            else None
        )
    if missing:
        text = f"a {kind} call needs {missing}"
        return Problem(index, "/" + missing, MISSING_REQUIRED, text, message_id)
    if kind != "alias" and user is None and anonymous is None:
        text = "an event needs a userId or an anonymousId"
        return Problem(index, "/userId", MISSING_IDENTITY, text, message_id)
    return None


def _event_time(message: Message, inputs: Inputs) -> tuple[datetime, datetime | None]:
    """``(timestamp, sentAt)``, skew-corrected; raises ``ValueError`` naming the field."""
    field, text = "timestamp", message.timestamp
    if message.original_timestamp:
        field, text = "originalTimestamp", message.original_timestamp
    try:
        original = parse_time(text) if text else None
        field = "sentAt"
        sent = parse_time(message.sent_at) if message.sent_at else inputs.sent_at
        field = "timestamp"
        received = inputs.received_at
        if original is None:
            return received, sent
        if sent is None:
            return original, sent
        return min(received, received - (sent - original)), sent
    except (ValueError, OverflowError) as e:
        raise ValueError(field) from e


def _merged(own: dict[str, Any] | None, shared: dict[str, Any] | None) -> dict[str, Any] | None:
    if not shared:
        return own
    return {**shared, **own} if own else shared


def normalize(raw: bytes, index: int, inputs: Inputs) -> Row | Problem:
    """The ``events`` row for one raw event (see :data:`EVENT_COLUMNS`), or why not."""
    decoded = decode(raw, index)
    if isinstance(decoded, Problem):
        return decoded
    return normalize_message(decoded, index, inputs)


def normalize_message(message: Message, index: int, inputs: Inputs) -> Row | Problem:
    """Like :func:`normalize`, for an already decoded message."""
    kind = inputs.kind or message.type
    message_id = _text(message.message_id)
    if kind not in TYPES:
        text = f"type must be one of {', '.join(TYPES)}"
        reason = MISSING_REQUIRED if kind is None else INVALID_TYPE
        return Problem(index, "/type", reason, text, message_id)
    if message_id is None:
        return Problem(index, "/messageId", MISSING_REQUIRED, "an event needs a messageId")
    problem = _required(message, kind, index, message_id)
    if problem is not None:
        return problem
    try:
        timestamp, sent = _event_time(message, inputs)
        stamps = (micros(timestamp), micros(inputs.received_at), micros(sent) if sent else None)
    except (ValueError, OverflowError) as e:
        field = str(e) if isinstance(e, ValueError) and e.args else "timestamp"
        text = f"{field} is not an ISO 8601 instant within range"
        return Problem(index, f"/{field}", INVALID_TIMESTAMP, text, message_id)
    message = msgspec.structs.replace(
        message,
        type=kind,
        sent_at=None,
        context=_merged(message.context, inputs.context),
        integrations=_merged(message.integrations, inputs.integrations),
    )
    return _row(message, kind, message_id, stamps, index, inputs)


def _row(
    message: Message,
    kind: str,
    message_id: str,
    stamps: tuple[int, int, int | None],
    index: int,
    inputs: Inputs,
) -> Row | Problem:
    digest = payload_hash(message)
    properties, traits = message.properties, message.traits
    if kind == "identify" and traits is None and message.context:
        context_traits = message.context.get("traits")
        traits = context_traits if isinstance(context_traits, dict) else None
    if message.category is not None and "category" not in (properties or {}):
        properties = {**(properties or {}), "category": message.category}
    violations: str | None = None
    if inputs.plan is not None:
        found = inputs.plan.check(kind, message.event, properties, traits)
        if found:
            if not inputs.warn_only:
                first = found[0]
                more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
                text = f"tracking plan: {first.message}{more}"
                return Problem(index, first.pointer, PLAN_VIOLATION, text, message_id)
            violations = _encode(
                [{"pointer": v.pointer, "message": v.message} for v in found]
            ).decode()
    context = message.context
    if inputs.ip and (context is None or "ip" not in context):
        context = {**(context or {}), "ip": inputs.ip}
    return (
        message_id,
        kind,
        message.event if kind == "track" else None,
        _text(message.anonymous_id),
        _text(message.user_id),
        stamps[0],
        stamps[1],
        stamps[2],
        inputs.source,
        None if properties is None else _encode(properties).decode(),
        None if context is None else _encode(context).decode(),
        None if traits is None else _encode(traits).decode(),
        message.name,
        _text(message.group_id),
        _text(message.previous_id),
        digest,
        violations,
    )
