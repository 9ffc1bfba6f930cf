"""Signed open and click tokens (:mod:`personify.signed`, domains ``open`` and ``click``).

An open token names the message (its idempotency key) and the customer; a click token also
names the link's position in the email and its target URL. The key is the project's
``signing_key``, under a domain of its own (``open`` / ``click``), so an unsubscribe token is
never a valid tracking token nor the other way round. A changed byte makes a token invalid — in
particular nobody can point a click token at another URL: the redirect only ever goes to the
URL the token itself carries (never an open redirect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from personify.signed import seal, unseal

Kind = Literal["open", "click"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def sign_open(key: bytes, message_key: str, customer_id: str) -> str:
    """The open-pixel token of one message."""
    return seal(key, "open", {"k": message_key, "c": customer_id})


def sign_click(key: bytes, message_key: str, customer_id: str, link: int, url: str) -> str:
    """The click token of link number ``link`` (going to ``url``) of one message."""
    return seal(key, "click", {"k": message_key, "c": customer_id, "i": link, "u": url})


def verify(key: bytes, kind: Kind, token: str) -> TrackingClaim | None:
    """The claim of a ``kind`` token signed with ``key``; ``None`` when forged, altered,
    malformed or of the other kind."""
    doc = unseal(key, kind, token)
    if doc is None:
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
    return _CONTROL.search(url) is None
