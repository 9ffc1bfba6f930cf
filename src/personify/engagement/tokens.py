"""Signed open and click tokens: ``PAYLOAD.SIGNATURE``, both base64url, HMAC-SHA256.

An open token names the message (its idempotency key) and the customer; a click token also
names the link's position in the email and its target URL. The key is the project's
``signing_key``, under a domain of its own (``open`` / ``click``), so an unsubscribe token is
never a valid tracking token nor the other way round. A changed byte makes a token invalid — in
particular nobody can point a click token at another URL: the redirect only ever goes to the
URL the token itself carries (never an open redirect).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

SIGNATURE_BYTES = 16
Kind = Literal["open", "click"]


@dataclass(frozen=True)
class TrackingClaim:
    """What a valid tracking token says."""

    kind: Kind
    key: str
    """The message's idempotency key (``messages.idempotency_key``)."""
    customer_id: str
    link: int | None = None
    """The link's position among the email's tracked links (clicks only)."""
    url: str | None = None
    """Where the click goes (clicks only)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, kind: Kind, payload: str) -> bytes:
    message = kind.encode("ascii") + b"\0" + payload.encode("ascii")
    return hmac.new(key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def _sign(key: bytes, kind: Kind, doc: dict[str, object]) -> str:
    if not key:
        raise ValueError("an empty signing key")
    payload = _b64(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return f"{payload}.{_b64(_mac(key, kind, payload))}"


def sign_open(key: bytes, message_key: str, customer_id: str) -> str:
    """The open-pixel token of one message."""
    return _sign(key, "open", {"k": message_key, "c": customer_id})


def sign_click(key: bytes, message_key: str, customer_id: str, link: int, url: str) -> str:
    """The click token of link number ``link`` (going to ``url``) of one message."""
    return _sign(key, "click", {"k": message_key, "c": customer_id, "i": link, "u": url})


def verify(key: bytes, kind: Kind, token: str) -> TrackingClaim | None:
    """The claim of a ``kind`` token signed with ``key``; ``None`` when forged, altered,
    malformed or of the other kind."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or not key or len(token) > 8192:
        return None
    try:
        given = _unb64(signature)
        if _b64(given) != signature:  # one encoding only: a changed character always fails
            return None
        if not hmac.compare_digest(given, _mac(key, kind, payload)):
            return None
        doc = json.loads(_unb64(payload))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(doc, dict):
        return None
    message_key, customer_id = doc.get("k"), doc.get("c")
    if not isinstance(message_key, str) or not isinstance(customer_id, str):
        return None
    if kind == "open":
        return TrackingClaim("open", message_key, customer_id)
    link, url = doc.get("i"), doc.get("u")
    if not isinstance(link, int) or not isinstance(url, str) or not safe_target(url):
        return None
    return TrackingClaim("click", message_key, customer_id, link, url)


def safe_target(url: str) -> bool:
    """Only absolute ``http(s)`` URLs are tracked and redirected to (no ``javascript:``, no
    scheme-relative ``//host`` and no control characters)."""
    lowered = url.lower()
    if not (lowered.startswith("http://") or lowered.startswith("https://")):
        return False
    return not any(ord(ch) < 0x20 or ch == "\x7f" for ch in url)
