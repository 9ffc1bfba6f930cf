"""Signed unsubscribe tokens: ``PAYLOAD.SIGNATURE``, both base64url, HMAC-SHA256.

The payload names the customer and the purpose (e.g. ``marketing``). Anyone holding a token can
unsubscribe that customer from that purpose — nothing else; a changed byte makes it invalid. The
key is the project's ``signing_key`` (``${PERSONIFY_SECRET_KEY}``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from personify.config import Project
from personify.errors import ConfigError

SIGNATURE_BYTES = 16


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a valid token says."""

    customer_id: str
    purpose: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    digest = hmac.new(key, b"unsubscribe\0" + payload.encode("ascii"), hashlib.sha256).digest()
    return digest[:SIGNATURE_BYTES]


DEFAULT_PURPOSE = "email_marketing"
"""The purpose a token names when its sender names none: the purpose journeys send under by
default (``journeys.purpose``), so an unsubscribe revokes the consent the sends check."""


def sign(key: bytes, customer_id: str, purpose: str = DEFAULT_PURPOSE) -> str:
    """A token letting its holder unsubscribe ``customer_id`` from ``purpose``."""
    if not key:
        raise ValueError("an empty signing key")
    doc = json.dumps({"c": customer_id, "p": purpose}, separators=(",", ":"))
    payload = _b64(doc.encode("utf-8"))
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify(key: bytes, token: str) -> UnsubscribeClaim | None:
    """The claim of a token signed with ``key``; ``None`` when forged, altered or malformed."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or not key:
        return None
    try:
        # compared as canonical text: base64's unused low bits must not give one token
        # several valid spellings
        if not hmac.compare_digest(signature, _b64(_mac(key, payload))):
            return None
        doc = json.loads(_unb64(payload))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("c"), str):
        return None
    return UnsubscribeClaim(doc["c"], str(doc.get("p", DEFAULT_PURPOSE)))


def project_key(project: Project) -> bytes:
    """The project's signing key. Raises :class:`ConfigError` when ``signing_key`` is not set."""
    secret = project.config.signing_key
    if not secret:
        raise ConfigError(
            "no signing_key: unsubscribe links cannot be signed",
            file=str(project.file),
            key="signing_key",
            hint="add `signing_key: ${PERSONIFY_SECRET_KEY}` and set PERSONIFY_SECRET_KEY "
            "(e.g. in .env) to a long random value",
        )
    return secret.reveal().encode("utf-8")
