"""Quarantine reason codes — the one registry — and quarantine ids.

Light on purpose (no warehouse, no Arrow): the tracking API's normalizer processes
(:mod:`personify.ingest.tracking.pool`) import it. :mod:`personify.ingest.quarantine` re-exports
everything here.
"""

from __future__ import annotations

import hashlib
from typing import Final

MISSING_REQUIRED: Final = "missing_required"
INVALID_TYPE: Final = "invalid_type"
INVALID_EMAIL: Final = "invalid_email"
MALFORMED_JSON: Final = "malformed_json"
MALFORMED_ROW: Final = "malformed_row"
DUPLICATE_KEY_IN_FILE: Final = "duplicate_key_in_file"
MISSING_IDENTITY: Final = "missing_identity"
OUT_OF_RANGE: Final = "out_of_range"
EVENT_TOO_LARGE: Final = "event_too_large"
INVALID_VALUE: Final = "invalid_value"
INVALID_TIMESTAMP: Final = "invalid_timestamp"
FUTURE_TIMESTAMP: Final = "future_timestamp"
PLAN_VIOLATION: Final = "tracking_plan_violation"
PLAN_UNREADABLE: Final = "tracking_plan_unreadable"
CONFLICTING_DUPLICATE: Final = "conflicting_duplicate"
BLOCKED_VALUE: Final = "blocked_value"

REASONS: Final[dict[str, str]] = {
    MISSING_REQUIRED: "a required column or field is missing or empty (an event: "
    "messageId; event for track, groupId for group, userId and previousId for alias)",
    INVALID_TYPE: "a value cannot be read as its column's type (an event: not an object, a field "
    "of the wrong type, properties/traits/context that are not objects, or an unknown message "
    "type)",
    INVALID_EMAIL: "an email column holds something that is not an email address",
    MALFORMED_JSON: "not decodable JSON: a JSON Lines line that is not a JSON object (or not "
    "UTF-8), a webhook body or tracking event that does not parse",
    MALFORMED_ROW: "a CSV row with a different number of fields than the header",
    DUPLICATE_KEY_IN_FILE: "the row's key appeared earlier in the same file (the first is kept)",
    MISSING_IDENTITY: "an event with neither a userId nor an anonymousId",
    OUT_OF_RANGE: "a value outside its column's range (a quantity of 0 or less, a negative price)",
    EVENT_TOO_LARGE: "a tracking event's JSON is over 32 KB (rejected, not kept)",
    INVALID_VALUE: "text holds a NUL character (a tracking event's string, a file's text or JSON "
    "value)",
    INVALID_TIMESTAMP: "a tracking event's timestamp is not ISO 8601 or is out of range",
    FUTURE_TIMESTAMP: "an event's timestamp is further after the event was received than the "
    "source's future_tolerance (a device clock ahead, with no sentAt to correct it by); replay "
    "it once the tolerance allows it",
    PLAN_VIOLATION: "the tracking plan's JSON Schema for the event refuses it",
    PLAN_UNREADABLE: "the tracking plan's schema file for the event cannot be used (not JSON, not "
    "a valid JSON Schema): the event was not checked; fix the file, then replay it",
    CONFLICTING_DUPLICATE: "a messageId already stored with another payload (the first is kept)",
    BLOCKED_VALUE: "an uploaded list's identifier is an identity.blocked value (a placeholder or "
    "shared test address): it links nobody, so it would match nobody",
}
"""Every quarantine reason code and what it means — the one registry: the file importer, the
REST and webhook sources and the tracking API (:mod:`personify.ingest.tracking.normalize`) all
take their codes from here."""

NUL_MESSAGE: Final = "text may not contain NUL characters (\\u0000)"
"""Why a value with a NUL is refused (``invalid_value``): the tracking API's words and a file's."""

TRACKING_REASONS: Final = frozenset(
    {
        EVENT_TOO_LARGE,
        INVALID_VALUE,
        MALFORMED_JSON,
        INVALID_TYPE,
        MISSING_REQUIRED,
        MISSING_IDENTITY,
        INVALID_TIMESTAMP,
        FUTURE_TIMESTAMP,
        PLAN_VIOLATION,
        PLAN_UNREADABLE,
        CONFLICTING_DUPLICATE,
    }
)
"""The codes the tracking API gives (a subset of :data:`REASONS`)."""


def quarantine_id(source: str, origin: str, position: str | int) -> str:
    """The deterministic id of one quarantined input (same formula as :func:`to_rows`)."""
    return hashlib.sha256(f"{source}:{origin}:{position}".encode()).hexdigest()[:32]
