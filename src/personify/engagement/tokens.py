"""Signed open and click tokens (:mod:`personify.signed`, domains ``open`` and ``click``).

An open token names the message (its idempotency key) and the customer; a click token also
names the link's position in the email and its target URL. The key is the project's
``signing_key``, under a domain of its own, so an unsubscribe token is never a valid tracking
token nor the other way round. A changed byte makes a token invalid — in particular nobody can
point a click token at another URL: the redirect only ever goes to the URL the token itself
carries (never an open redirect).

Click tokens are made per message (:class:`ClickSigner`), as ``MESSAGE.LINK.URL.SIGNATURE``:
``MESSAGE`` is the open token's payload (base64url JSON of key and customer, encoded once per
email), ``LINK`` the link's position in decimal, ``URL`` the target in base64url, and
``SIGNATURE`` keyed BLAKE2b (16 bytes in hex; BLAKE2's keyed mode is a MAC) of ``LINK.URL`` under a
key derived once per message — HMAC-SHA256(``signing_key``, ``click-links`` NUL ``MESSAGE``) — so
an email's ten links cost one derivation and ten short MACs, not ten JSON documents and full
HMACs. The signature covers everything the token says (the message through the derived key).
Tokens of the first format (``PAYLOAD.SIGNATURE`` sealed by :func:`personify.signed.seal` under
``click``, sent before this format) stay valid: :func:`verify` reads both.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from typing import Literal

from personify.signed import MAX_TOKEN_CHARS, SIGNATURE_BYTES, seal, unb64, unseal
from personify.signed import _mac as seal_signature  # the open token's, as seal() signs

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


_LINKS = b"click-links\0"
_DIGITS = re.compile(r"0|[1-9][0-9]{0,8}")


def _message(message_key: str, customer_id: str) -> str:
    """The message part of open and click tokens (what :func:`~personify.signed.seal` encodes)."""
    # json.dumps({"k": …, "c": …}, separators=(",", ":"), ensure_ascii=False), spelled out
    text = f'{{"k":{_json_string(message_key)},"c":{_json_string(customer_id)}}}'
    return _b64(text.encode("utf-8"))


class ClickSigner:
    """The click tokens of one message: ``signer(link, url)`` (see the module docstring)."""

    __slots__ = ("_key", "message", "open")

    def __init__(self, key: bytes, message_key: str, customer_id: str) -> None:
        if not key:
            raise ValueError("an empty signing key")
        self.message = _message(message_key, customer_id)
        self._key = hmac.digest(key, _LINKS + self.message.encode("ascii"), "sha256")
        self.open = f"{self.message}.{seal_signature(key, 'open', self.message)}"
        """The message's open token (:func:`sign_open`; the message part encoded once)."""

    def __call__(self, link: int, url: str) -> str:
        # _b64 and _link_mac written out: this runs for every link of every email
        encoded = binascii.b2a_base64(url.encode(), newline=False).rstrip(b"=").translate(_URLSAFE)
        body = b"%d.%s" % (link, encoded)
        mac = hashlib.blake2b(body, key=self._key, digest_size=SIGNATURE_BYTES).hexdigest()
        return f"{self.message}.{body.decode()}.{mac}"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """:func:`personify.signed.b64` (base64url without padding), without its call overhead."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


def _link_mac(derived: bytes, body: bytes) -> str:
    """The signature of ``LINK.URL``: keyed BLAKE2b, 16 bytes, in hex."""
    return hashlib.blake2b(body, key=derived, digest_size=SIGNATURE_BYTES).hexdigest()


def sign_click(key: bytes, message_key: str, customer_id: str, link: int, url: str) -> str:
    """The click token of link number ``link`` (going to ``url``) of one message (a whole
    email's links: :class:`ClickSigner`, which derives the message's key once)."""
    return ClickSigner(key, message_key, customer_id)(link, url)


def _unseal_links(key: bytes, token: str) -> dict[str, object] | None:
    """The claim of a ``MESSAGE.LINK.URL.SIGNATURE`` click token as a first-format document."""
    message, link, url, signature = token.split(".")
    if not (message and url and signature and key) or _DIGITS.fullmatch(link) is None:
        return None
    try:
        derived = hmac.digest(key, _LINKS + message.encode("ascii"), "sha256")
        expected = _link_mac(derived, f"{link}.{url}".encode("ascii"))
        if not hmac.compare_digest(signature, expected):
            return None
        doc = json.loads(unb64(message))
        target = unb64(url).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    if not isinstance(doc, dict):
        return None
    return {**doc, "i": int(link), "u": target}


def verify(key: bytes, kind: Kind, token: str) -> TrackingClaim | None:
    """The claim of a ``kind`` token signed with ``key``; ``None`` when forged, altered,
    malformed or of the other kind."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    if kind == "click" and token.count(".") == 3:
        doc = _unseal_links(key, token)
    else:
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
