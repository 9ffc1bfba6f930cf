"""ESP event webhooks: who bounced or complained, and proof that the ESP sent the news.

Payloads (:func:`parse`):

* ``sendgrid`` — SendGrid's Event Webhook: a JSON array of events. ``bounce`` (not ``type:
  blocked``, which is temporary) → *bounced*; ``spamreport`` → *complained*; ``unsubscribe`` and
  ``group_unsubscribe`` → *unsubscribed*; everything else (delivered, open, deferred …) is
  ignored. The ``custom_args`` the ESP transport sent (``customer_id``, ``personify_key``) come
  back as top-level fields.
* ``postmark`` — Postmark's bounce and spam-complaint webhooks: one JSON object (an array of
  them is accepted). ``RecordType: Bounce`` with a hard ``Type`` (``HardBounce``,
  ``BadEmailAddress``, ``ManuallyDeactivated``) → *bounced*; ``SpamComplaint`` → *complained*;
  ``SubscriptionChange`` with ``SuppressSending`` → *unsubscribed*. ``Metadata`` carries the
  custom fields.
* ``standard`` — either shape, recognized by its form.

Verification (:func:`verify`), by :attr:`~personify.config.EspWebhook.scheme`:

* ``standard`` — Standard Webhooks: ``webhook-signature`` holds ``v1,<base64 HMAC-SHA256>`` of
  ``{webhook-id}.{webhook-timestamp}.{body}`` under the secret (``whsec_`` + base64 key); the
  timestamp must be within the tolerance.
* ``sendgrid`` — SendGrid's Signed Event Webhook: ECDSA P-256/SHA-256 over
  ``{X-Twilio-Email-Event-Webhook-Timestamp}{body}``, signature in
  ``X-Twilio-Email-Event-Webhook-Signature``, verified with the account's public key.
* ``basic`` — HTTP Basic credentials in the webhook URL (Postmark's way), ``user:password``.

Every comparison is constant-time. Nothing here logs an address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from personify.config import EspWebhook
from personify.errors import PersonifyError, Terminal

Reason = Literal["bounced", "complained", "unsubscribed"]


class WebhookRejected(PersonifyError, Terminal):
    """A webhook request that is not proven to come from the ESP, or that cannot be read.
    ``status`` is the HTTP status to answer (401 or 400)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EspEvent:
    """One event that suppresses an address."""

    reason: Reason
    email: str
    """The address (never logged)."""
    customer_id: str | None = None
    """The customer the ESP transport named in its custom args, when echoed back."""
    event_id: str | None = None
    """The ESP's id of the event (dedup is by suppression key anyway)."""


_SENDGRID_REASONS: dict[str, Reason] = {
    "bounce": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int):
        return str(value)
    return None


def _sendgrid(event: Mapping[str, Any]) -> EspEvent | None:
    reason = _SENDGRID_REASONS.get(str(event.get("event", "")))
    if reason is None or (reason == "bounced" and event.get("type") == "blocked"):
        return None
    email = _text(event.get("email"))
    if email is None:
        return None
    return EspEvent(reason, email, _text(event.get("customer_id")), _text(event.get("sg_event_id")))


def _postmark(event: Mapping[str, Any]) -> EspEvent | None:
    record = str(event.get("RecordType", ""))
    kind = str(event.get("Type", ""))
    reason: Reason | None = None
    if record == "SpamComplaint" or kind == "SpamComplaint":
        reason = "complained"
    elif record == "Bounce" and kind in _POSTMARK_HARD:
        reason = "bounced"
    elif record == "SubscriptionChange" and event.get("SuppressSending") is True:
        reason = "unsubscribed"
    email = _text(event.get("Email") or event.get("Recipient"))
    if reason is None or email is None:
        return None
    meta = event.get("Metadata")
    customer_id = _text(meta.get("customer_id")) if isinstance(meta, dict) else None
    return EspEvent(reason, email, customer_id, _text(event.get("ID")))


def parse(provider: str, body: bytes) -> tuple[int, list[EspEvent]]:
    """``(events received, events that suppress)`` of a webhook body. Raises
    :class:`WebhookRejected` (400) when it is not a JSON object or array of objects."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise WebhookRejected("the body is not JSON", 400) from None
    items = doc if isinstance(doc, list) else [doc]
    if not items or not all(isinstance(i, dict) for i in items):
        raise WebhookRejected("expected a JSON object or an array of objects", 400)
    out: list[EspEvent] = []
    for item in items:
        postmark = provider == "postmark" or (provider == "standard" and "RecordType" in item)
        found = _postmark(item) if postmark else _sendgrid(item)
        if found is not None:
            out.append(found)
    return len(items), out


# ------------------------------------------------------------------------------- verification
def verify(
    webhook: EspWebhook,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookRejected` unless the request is proven to come from the ESP.
    ``headers``: lower-case names."""
    now = time.time() if now is None else now
    scheme = webhook.scheme
    secret = webhook.secret.reveal()
    if scheme == "basic":
        _basic(secret, headers.get("authorization", ""))
    elif scheme == "standard":
        _standard(secret, headers, body, now, webhook.tolerance_seconds)
    else:
        _sendgrid_signature(secret, headers, body, now, webhook.tolerance_seconds)


def _fresh(timestamp: str, now: float, tolerance: int) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookRejected("the signature timestamp is not a number") from None
    if abs(now - sent) > tolerance:
        raise WebhookRejected("the signature timestamp is too old or in the future (a replay?)")


def _basic(secret: str, authorization: str) -> None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic" or not token:
        raise WebhookRejected("send HTTP Basic credentials")
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("malformed HTTP Basic credentials") from None
    if not hmac.compare_digest(given, secret.encode("utf-8")):
        raise WebhookRejected("wrong credentials")


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"))
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def _standard(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: int
) -> None:
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not timestamp or not signatures:
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature")
    _fresh(timestamp, now, tolerance)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(
        hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    ).decode("ascii")
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise WebhookRejected("no valid webhook-signature")


SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def _sendgrid_signature(
    public_key: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: int
) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = headers.get(SENDGRID_SIGNATURE, "")
    timestamp = headers.get(SENDGRID_TIMESTAMP, "")
    if not signature or not timestamp:
        raise WebhookRejected(f"missing {SENDGRID_SIGNATURE} or {SENDGRID_TIMESTAMP}")
    _fresh(timestamp, now, tolerance)
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key))
    except (binascii.Error, ValueError) as e:
        raise PersonifyError(
            f"the SendGrid verification key is not a base64 DER public key ({e})",
            hint="copy the verification key from SendGrid's Signed Event Webhook settings",
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PersonifyError("the SendGrid verification key is not an elliptic-curve key")
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRejected("the SendGrid signature does not match") from None
