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
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from typing import Any, Literal

import msgspec

from personify.signed import MAX_TOKEN_CHARS, SIGNATURE_BYTES, hmac_sha256_pads, seal
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


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class _Signed(msgspec.Struct):
    """What a token's JSON part says (checked as it is decoded: a wrong type is no claim)."""

    k: str
    c: str
    i: int | None = None
    """First-format click tokens: the link's position."""
    u: str | None = None
    """First-format click tokens: the target."""


_SIGNED = msgspec.json.Decoder(_Signed)


def _unb64(text: str) -> bytes:
    """:func:`personify.signed.unb64` (lenient base64url, as ``urlsafe_b64decode``) without its
    call overhead. Raises ValueError (UnicodeError for non-ASCII, binascii.Error)."""
    data = text.encode("ascii").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


class Verifier:
    """Reads the tracking tokens signed with one key (:func:`verify` with the key's work done once).

    HMAC-SHA256 is computed from SHA-256 states keyed once (the inner and outer pads, the
    domain prefixes hashed in): per token that is a copy and an update of a few dozen bytes,
    none of which lets go of the interpreter lock — the one-shot ``hmac.digest`` does, which on
    a busy server hands the lock to another thread at every verification (a wait of up to the
    switch interval before the answer). Same results as HMAC (``hmac.digest``): the tests compare.
    The JSON part is decoded straight into its typed fields (no dictionary to check afterwards).
    """

    __slots__ = ("_click", "_links", "_open", "_outer")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty signing key")
        inner_pad, outer_pad = hmac_sha256_pads(key)
        inner = hashlib.sha256(inner_pad)
        self._outer = hashlib.sha256(outer_pad)
        self._open = inner.copy()
        self._open.update(b"open\0")  # personify.signed's message: domain NUL payload
        self._click = inner.copy()
        self._click.update(b"click\0")
        self._links = inner.copy()
        self._links.update(_LINKS)

    def _mac(self, prefixed: Any, data: bytes) -> bytes:
        inner = prefixed.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac: bytes = outer.digest()
        return mac

    def _sealed(self, prefixed: Any, token: str) -> _Signed | None:
        """:func:`personify.signed.unseal` of a ``PAYLOAD.SIGNATURE`` token."""
        payload, dot, signature = token.partition(".")
        if not dot or not payload or not signature:
            return None
        try:
            mac = self._mac(prefixed, payload.encode("ascii"))[:SIGNATURE_BYTES]
            expected = binascii.b2a_base64(mac, newline=False).rstrip(b"=").translate(_URLSAFE)
            if not hmac.compare_digest(signature.encode("ascii"), expected):
                return None
            return _SIGNED.decode(_unb64(payload))
        except (ValueError, msgspec.DecodeError):  # UnicodeError, binascii.Error, wrong types
            return None

    def _link_claim(self, token: str) -> TrackingClaim | None:
        """The claim of a ``MESSAGE.LINK.URL.SIGNATURE`` click token."""
        message, link, url, signature = token.split(".")
        if not (message and url and signature) or _DIGITS.fullmatch(link) is None:
            return None
        try:
            derived = self._mac(self._links, message.encode("ascii"))
            expected = _link_mac(derived, f"{link}.{url}".encode("ascii"))
            if not hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")):
                return None
            doc = _SIGNED.decode(_unb64(message))
            target = _unb64(url).decode("utf-8")
        except (ValueError, msgspec.DecodeError):
            return None
        if not safe_target(target):
            return None
        return TrackingClaim("click", doc.k, doc.c, int(link), target)

    def __call__(self, kind: Kind, token: str) -> TrackingClaim | None:
        """:func:`verify` with this verifier's key."""
        if len(token) > MAX_TOKEN_CHARS:
            return None
        if kind == "open":
            doc = self._sealed(self._open, token)
            return None if doc is None else TrackingClaim("open", doc.k, doc.c)
        if kind != "click":
            return None
        if token.count(".") == 3:
            return self._link_claim(token)
        doc = self._sealed(self._click, token)  # the first format
        if doc is None or doc.i is None or doc.u is None or not safe_target(doc.u):
            return None
        return TrackingClaim("click", doc.k, doc.c, doc.i, doc.u)


@functools.lru_cache(maxsize=16)
def verifier(key: bytes) -> Verifier:
    """The :class:`Verifier` of ``key`` (made once per key)."""
    return Verifier(key)


def verify(key: bytes, kind: Kind, token: str) -> TrackingClaim | None:
    """The claim of a ``kind`` token signed with ``key``; ``None`` when forged, altered,
    malformed or of the other kind."""
    if not key:
        return None
    return verifier(key)(kind, token)


def safe_target(url: str) -> bool:
    """Only absolute ``http(s)`` URLs are tracked and redirected to (no ``javascript:``, no
    scheme-relative ``//host`` and no control characters)."""
    lowered = url.lower()
    if not (lowered.startswith("http://") or lowered.startswith("https://")):
        return False
    return _CONTROL.search(url) is None
