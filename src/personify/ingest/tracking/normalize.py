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
``future_timestamp``        the timestamp (skew-corrected) is more than               quarantined
                            ``future_tolerance`` after the event was received
``tracking_plan_violation`` the tracking plan's schema refuses it (``enforce`` mode) quarantined
``tracking_plan_unreadable`` the schema file for the event cannot be used (not       quarantined
                            JSON, not a JSON Schema; ``enforce`` mode)
==========================  =======================================================  ===========

Clock skew: a sender's clock may be wrong, but the *difference* between when it says the event
happened and when it says it sent it is right. So, as Segment does,
``timestamp = receivedAt − (sentAt − originalTimestamp)`` when both are given (never later than
``receivedAt``); the sender's timestamp as given when there is no ``sentAt``; ``receivedAt`` when
there is no timestamp at all. A timestamp still more than the source's ``future_tolerance`` (a day
by default) after ``receivedAt`` — a device clock years ahead, no ``sentAt`` to correct it by — is
quarantined (``future_timestamp``): stored, it would make its customer "seen" for years to come
(recency, ``last_seen``, windows). File, REST and webhook rows of ``events`` meet the same rule
(:mod:`personify.ingest.rules`).

The payload hash is a 64-bit BLAKE2b of the event's bytes as sent — or, when the event carries its
own ``sentAt`` (SDKs re-stamp it on retries), of its canonical JSON without it: equal for a
byte-identical resend. Another hash is not yet another event: the store compares the stored event's
content with the newcomer's before it calls a reused ``messageId`` a conflict
(:func:`personify.ingest.tracking.store.content`). Canonical JSON for every event would cost
~2.5 µs more an event (3.4 against 0.9 µs for the hash, beside ~4.8 µs for the whole normalization
of a 530-byte event), for the rare resend that differs in its bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from personify.ingest import reasons as _q
from personify.ingest.reasons import (
    CONFLICTING_DUPLICATE as CONFLICTING_DUPLICATE,  # (re-export)
)
from personify.ingest.reasons import (
    EVENT_TOO_LARGE,
    FUTURE_TIMESTAMP,
    INVALID_TIMESTAMP,
    INVALID_TYPE,
    INVALID_VALUE,
    MALFORMED_JSON,
    MISSING_IDENTITY,
    MISSING_REQUIRED,
    NUL_MESSAGE,
    PLAN_UNREADABLE,
    PLAN_VIOLATION,
)
from personify.ingest.tracking.messages import MAX_EVENT_BYTES, TYPES, Message, Wire, needs
from personify.ingest.tracking.plan import Plan, Violation

REASONS: Final = {code: _q.REASONS[code] for code in sorted(_q.TRACKING_REASONS)}
"""The tracking API's quarantine reasons: a view of the one registry,
:data:`personify.ingest.quarantine.REASONS`."""

EVENT_FIELDS: Final = (
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
)
"""The ``events`` columns that hold the event itself, as sent (Segment's fields, and when it was
received from which source): what a row fills and what event forwarding sends."""
EVENT_COLUMNS: Final = (*EVENT_FIELDS, "payload_hash", "plan_violations")
"""The ``events`` columns a row fills, in the order of its tuple (timestamps as µs since 1970)."""

Row = tuple[Any, ...]
FUTURE_TOLERANCE: Final = 86_400.0
"""Seconds an event may say it happened after it was received, by default (a source's
``future_tolerance``)."""
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_MIN_US: Final = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // _US
_MAX_US: Final = (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // _US
_AT: Final = re.compile(r" - at `\$(.*)`$")
_SEGMENT: Final = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Wire)
_full = msgspec.json.Decoder(Message)
_objects = msgspec.json.Decoder(dict[str, Any])
_BRACE: Final = ord("{")
MAX_LISTED: Final = 50
"""Plan violations spelt out in a :class:`Problem`'s message (all are in its ``violations``)."""


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
    violations: tuple[Violation, ...] = ()
    """``tracking_plan_violation``: every way the event breaks its schema (pointers inside the
    event; ``message`` lists them all)."""


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
    future_tolerance: float = FUTURE_TOLERANCE
    """Seconds an event's (skew-corrected) timestamp may be after ``received_at``."""
    received_us: int = field(init=False)
    sent_us: int | None = field(init=False)
    future_us: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "received_us", micros(self.received_at))
        object.__setattr__(self, "sent_us", micros(self.sent_at) if self.sent_at else None)
        object.__setattr__(self, "future_us", int(self.future_tolerance * 1_000_000))


def micros(value: datetime) -> int:
    """Microseconds since 1970 (UTC)."""
    since = value - EPOCH  # the fields, not ``// _US``: a third cheaper, the same integer
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


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


def payload_hash(raw: bytes, message: Wire) -> int:
    """The 64-bit hash telling a byte-identical resend at once: of the event's bytes as sent — or,
    when the event carries its own ``sentAt`` (re-stamped by SDKs on every retry), of its
    canonical JSON without it. A stored id with another hash is compared by content (the store)."""
    data = raw
    if message.sent_at is not None:
        data = _canonical.encode(msgspec.structs.replace(_full.decode(raw), sent_at=None))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def _text(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return value if value.__class__ is str else str(value)


Parts = tuple[bytes | None, bytes | None, bytes | None]
"""``(properties, traits, context)`` JSON bytes, ``None`` when absent or null."""


def decode(raw: bytes, index: int) -> tuple[Wire, Parts] | Problem:
    """The event decoded (free-form parts still raw), or the problem with its bytes."""
    if len(raw) > MAX_EVENT_BYTES:
        msg = f"the event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}"
        return Problem(index, "", EVENT_TOO_LARGE, msg, rejected=True)
    escapes = b"\\u" in raw  # one scan; msgspec encoders send non-ASCII text as UTF-8
    if escapes and b"\\u0000" in raw:  # maybe a NUL (or an escaped backslash before "u0000")
        problem = _nul(raw, index)
        if problem is not None:
            return problem
    try:
        if escapes and (b"\\ud" in raw or b"\\uD" in raw):
            _full.decode(raw)  # raw parts are stored as sent: check surrogate escapes pair up
        message = _decoder.decode(raw)
    except msgspec.ValidationError as e:
        detail = str(e).split(" - at ", 1)[0]
        return Problem(index, pointer_of(e), INVALID_TYPE, detail)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        return Problem(index, "", MALFORMED_JSON, f"not decodable JSON ({type(e).__name__})")
    # the three parts inline (the hot path: one call per event instead of four)
    props = bytes(message.properties) if message.properties else None
    traits = bytes(message.traits) if message.traits else None
    ctx = bytes(message.context) if message.context else None
    if (
        (props is not None and props[0] != _BRACE)
        or (traits is not None and traits[0] != _BRACE)
        or (ctx is not None and ctx[0] != _BRACE)
    ):  # rare: a null part, or one that is not an object
        return _odd_parts(message, index, (props, traits, ctx))
    return message, (props, traits, ctx)


def _nul(raw: bytes, index: int) -> Problem | None:
    """The NUL character in a string of ``raw`` (value or key), with its JSON pointer; ``None``
    when there is none (or ``raw`` is not JSON: the decode that follows says so)."""
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return None
    where = _nul_in(doc)
    if where is None:
        return None
    found = doc.get("messageId") if isinstance(doc, dict) else None
    message_id = _text(found) if isinstance(found, str | int) else None
    if message_id is not None and "\x00" in message_id:
        message_id = None
    return Problem(index, where, INVALID_VALUE, NUL_MESSAGE, message_id)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _nul_in(doc: Any) -> str | None:
    """The JSON pointer of the first string holding a NUL in ``doc`` (of its object, for a key);
    a loop, not recursion: the document may be nested as deep as the decoder allows."""
    todo: list[tuple[str, Any]] = [("", doc)]
    while todo:
        pointer, value = todo.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return pointer
        elif isinstance(value, dict):
            if any("\x00" in key for key in value):
                return pointer
            items = [(f"{pointer}/{_escape(k)}", v) for k, v in value.items()]
            todo += reversed(items)
        elif isinstance(value, list):
            todo += reversed([(f"{pointer}/{i}", v) for i, v in enumerate(value)])
    return None


def _odd_parts(message: Wire, index: int, parts: Parts) -> tuple[Wire, Parts] | Problem:
    """Parts of which one at least is not an object: ``null`` is absent, anything else refused."""
    props, traits, ctx = (None if part == b"null" else part for part in parts)
    for name, part in zip(("properties", "traits", "context"), (props, traits, ctx), strict=True):
        if part is not None and part[:1] != b"{":
            text = f"Expected `object | null`, got `{_kind_of(part)}`"
            return Problem(index, "/" + name, INVALID_TYPE, text, _text(message.message_id))
    return message, (props, traits, ctx)


def _kind_of(raw: bytes) -> str:
    value = msgspec.json.decode(raw)
    return {list: "array", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), "value"
    )


def _required(
    message: Wire, kind: str, index: int, message_id: str, user: str | None, anonymous: str | None
) -> Problem | None:
    """:data:`~.messages.REQUIRED` spelled out (the hot path; a test holds the two equal)."""
    missing: str | None = None
    if kind == "track" and not message.event:
        missing = "event"
    elif kind == "group" and _text(message.group_id) is None:
        missing = "groupId"
    elif kind == "alias" and user is None:
        missing = "userId"
    elif kind == "alias" and _text(message.previous_id) is None:
        missing = "previousId"
    if missing:
        text = needs(kind, missing)
        return Problem(index, "/" + missing, MISSING_REQUIRED, text, message_id)
    if kind != "alias" and user is None and anonymous is None:
        text = "an event needs a userId or an anonymousId"
        return Problem(index, "/userId", MISSING_IDENTITY, text, message_id)
    return None


def _event_time(message: Wire, inputs: Inputs) -> tuple[int, int | None]:
    """``(timestamp, sentAt)`` in µs, skew-corrected; raises ``ValueError`` naming the field."""
    name, text = "timestamp", message.timestamp
    if message.original_timestamp:
        name, text = "originalTimestamp", message.original_timestamp
    try:
        original = micros(parse_time(text)) if text else None
        name = "sentAt"
        sent = micros(parse_time(message.sent_at)) if message.sent_at else inputs.sent_us
    except (ValueError, OverflowError) as e:
        raise ValueError(name) from e
    received = inputs.received_us
    if original is None:
        return received, sent
    stamp = original if sent is None else min(received, received - (sent - original))
    if not _MIN_US <= stamp <= _MAX_US:
        raise ValueError("timestamp")
    return stamp, sent


def normalize(raw: bytes, index: int, inputs: Inputs) -> Row | Problem:
    """The ``events`` row for one raw event (see :data:`EVENT_COLUMNS`), or why not."""
    decoded = decode(raw, index)
    if isinstance(decoded, Problem):
        return decoded
    message, parts = decoded
    kind = inputs.kind or message.type
    # ids as text (a number is its decimal text, "" is absent): strings, the usual case, inline
    value = message.message_id
    message_id = (value or None) if value.__class__ is str else _text(value)
    if kind not in TYPES:
        text = f"type must be one of {', '.join(TYPES)}"
        reason = MISSING_REQUIRED if kind is None else INVALID_TYPE
        return Problem(index, "/type", reason, text, message_id)
    if message_id is None:
        return Problem(index, "/messageId", MISSING_REQUIRED, "an event needs a messageId")
    value = message.user_id
    user = (value or None) if value.__class__ is str else _text(value)
    value = message.anonymous_id
    anonymous = (value or None) if value.__class__ is str else _text(value)
    problem = _required(message, kind, index, message_id, user, anonymous)
    if problem is not None:
        return problem
    try:
        timestamp, sent = _event_time(message, inputs)
    except ValueError as e:
        text = f"{e} is not an ISO 8601 instant within range"
        return Problem(index, f"/{e}", INVALID_TIMESTAMP, text, message_id)
    if timestamp - inputs.received_us > inputs.future_us:
        name = "originalTimestamp" if message.original_timestamp else "timestamp"
        return _future(index, name, timestamp - inputs.received_us, inputs, message_id)
    ids = (message_id, user, anonymous)
    return _row(raw, message, parts, kind, ids, (timestamp, sent), index, inputs)


def _future(index: int, name: str, ahead_us: int, inputs: Inputs, message_id: str) -> Problem:
    text = (
        f"{name} is {span(ahead_us / 1e6)} after the event was received (more than the source's "
        f"future_tolerance {duration_text(inputs.future_tolerance)}): a device clock ahead? "
        "Send sentAt so the skew is corrected, or raise future_tolerance and replay it"
    )
    return Problem(index, f"/{name}", FUTURE_TIMESTAMP, text, message_id)


def span(seconds: float) -> str:
    """``seconds`` in words, rounded down to its largest unit (``1096 days``, ``1 hour``)."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    n = int(seconds)
    return f"{n} second{'s' if n != 1 else ''}"


def duration_text(seconds: float) -> str:
    """``seconds`` as a config duration (``1d``, ``10m``, ``90s``)."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _dict(raw: bytes | None) -> dict[str, Any]:
    return _objects.decode(raw) if raw else {}


def _row(
    raw: bytes,
    message: Wire,
    parts: Parts,
    kind: str,
    ids: tuple[str, str | None, str | None],
    stamps: tuple[int, int | None],
    index: int,
    inputs: Inputs,
) -> Row | Problem:
    """``ids``: ``(messageId, userId, anonymousId)`` as text."""
    message_id = ids[0]
    props_raw, traits_raw, ctx_raw = parts
    properties = traits = context = None
    if kind == "identify" and traits_raw is None and ctx_raw and b'"traits"' in ctx_raw:
        context = _dict(ctx_raw)
        found = context.get("traits")
        traits = found if isinstance(found, dict) else None
    if message.category is not None:
        properties = _dict(props_raw)
        properties.setdefault("category", message.category)
    violations: str | None = None
    plan = inputs.plan
    schema = plan.schema_for(kind, message.event) if plan is not None else None
    if schema is None and plan is not None and plan.unreadable:  # a broken file: not unchecked
        broken = plan.unreadable_for(kind, message.event)
        if broken is not None:
            if not inputs.warn_only:
                text = f"tracking plan: {broken}; {broken.consequence}"
                return Problem(index, "", PLAN_UNREADABLE, text, message_id)
            violations = _encode([{"pointer": "", "message": f"not checked: {broken}"}]).decode()
    elif schema is not None:
        # the part as sent, when nothing changed it: a typed decode accepts most events
        # without building the dict (plan.Schema.accepts); the rest are checked the full way
        if schema.part == "traits":
            if traits is None and traits_raw is not None and schema.accepts(traits_raw):
                found_violations = []
            else:
                traits = traits if traits is not None else _dict(traits_raw)
                found_violations = schema.check(traits)
        elif properties is None and props_raw is not None and schema.accepts(props_raw):
            found_violations = []
        else:
            properties = properties if properties is not None else _dict(props_raw)
            found_violations = schema.check(properties)
        if found_violations:
            if not inputs.warn_only:
                return _refused(index, message_id, found_violations)
            listed = [{"pointer": v.pointer, "message": v.message} for v in found_violations]
            violations = _encode(listed).decode()
    if inputs.context:
        context = {**inputs.context, **(context if context is not None else _dict(ctx_raw))}
    if inputs.ip and (
        "ip" not in context if context is not None else not (ctx_raw and b'"ip"' in ctx_raw)
    ):
        context = {**(context if context is not None else _dict(ctx_raw)), "ip": inputs.ip}
    group, previous = message.group_id, message.previous_id
    return (
        message_id,
        kind,
        message.event if kind == "track" else None,
        ids[2],
        ids[1],
        stamps[0],
        inputs.received_us,
        stamps[1],
        inputs.source,
        # each part as JSON text: re-encoded if it was decoded (and maybe changed), else as sent
        _encode(properties).decode() if properties is not None else _utf8(props_raw),
        _encode(context).decode() if context is not None else _utf8(ctx_raw),
        _encode(traits).decode() if traits is not None else _utf8(traits_raw),
        message.name,
        None if group is None else _text(group),
        None if previous is None else _text(previous),
        payload_hash(raw, message),
        violations,
    )


def _refused(index: int, message_id: str, found: list[Violation]) -> Problem:
    """The problem of an event its schema refuses: every violation, each with its pointer."""
    listed = "; ".join(f"{v.pointer} {v.message}" for v in found[:MAX_LISTED])
    more = f"; and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    text = f"tracking plan: {listed}{more}"
    return Problem(index, found[0].pointer, PLAN_VIOLATION, text, message_id, False, tuple(found))


def _utf8(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None
