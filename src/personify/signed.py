"""Signed tokens for links in emails: ``PAYLOAD.SIGNATURE``, both base64url without padding.

The payload is a small JSON object; the signature is HMAC-SHA256 (truncated to
:data:`SIGNATURE_BYTES`) under the project's ``signing_key`` over ``domain + NUL + payload``, so a
token made for one use (``unsubscribe``, ``open``, ``click``, ``confirm-consent``) is never valid
for another. :func:`unseal` accepts only the canonical spelling of the signature (base64's unused
low bits would otherwise give one token several valid spellings) and compares in constant time.
Unsubscribe, double-opt-in and open/click tokens are all made here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

SIGNATURE_BYTES: Final = 16
MAX_TOKEN_CHARS: Final = 8192


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """The bytes of :func:`b64` text. Raises ValueError when it is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_TRANS_36: Final = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C: Final = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer padded keys (RFC 2104): the MAC of ``m`` is
    ``sha256(outer + sha256(inner + m))``, so SHA-256 states keyed once serve many messages."""
    if len(key) > 64:  # SHA-256's block size
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return key.translate(_TRANS_36), key.translate(_TRANS_5C)


def _mac(key: bytes, domain: str, payload: str) -> str:
    message = domain.encode("ascii") + b"\0" + payload.encode("ascii")
    return b64(hmac.digest(key, message, "sha256")[:SIGNATURE_BYTES])  # one C call


def seal(key: bytes, domain: str, doc: Mapping[str, object]) -> str:
    """A token carrying ``doc`` for ``domain``. Raises ValueError for an empty key."""
    if not key:
        raise ValueError("an empty signing key")
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    payload = b64(text.encode("utf-8"))
    return f"{payload}.{_mac(key, domain, payload)}"


def unseal(key: bytes, domain: str, token: str) -> dict[str, Any] | None:
    """The JSON object a valid ``domain`` token carries; ``None`` when it is forged, altered,
    of another domain, malformed or longer than :data:`MAX_TOKEN_CHARS`."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or not key or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        if not hmac.compare_digest(signature, _mac(key, domain, payload)):
            return None
        doc = json.loads(unb64(payload))
    except (ValueError, UnicodeError):
        return None
    return doc if isinstance(doc, dict) else None
