"""Signed unsubscribe tokens (:mod:`personify.signed`, domain ``unsubscribe``).

The payload names the customer and the purpose (e.g. ``email_marketing``) and, in tokens made
for a sent email, the message (``m``: its idempotency key), so the unsubscribe is attributed to
the journey, step and variant that sent it. Tokens without ``m`` (signed before it was added, or
for no message) stay valid: they unsubscribe all the same, attributed to nothing. Anyone holding
a token can unsubscribe that customer from that purpose — nothing else; a changed byte makes it
invalid. The key is the project's ``signing_key`` (``${PERSONIFY_SECRET_KEY}``).

A test send's email (``personify send-test``, to staff) carries a *test* token instead
(:func:`sign_test`, domain ``unsubscribe-test``): it names no customer, so a reviewer pressing
their mail client's unsubscribe button unsubscribes nobody; ``/unsubscribe/{token}`` answers it
with a page saying so (:func:`is_test`).
"""

from __future__ import annotations

from dataclasses import dataclass

from personify.config import Project
from personify.errors import ConfigError
from personify.signed import SIGNATURE_BYTES, seal, unseal

__all__ = [
    "DEFAULT_PURPOSE",
    "SIGNATURE_BYTES",
    "UnsubscribeClaim",
    "is_test",
    "project_key",
    "sign",
    "sign_test",
    "verify",
]

DEFAULT_PURPOSE = "email_marketing"
"""The purpose a token names when its sender names none: the purpose journeys send under by
default (``journeys.purpose``), so an unsubscribe revokes the consent the sends check."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    """What a valid token says."""

    customer_id: str
    purpose: str
    message_key: str | None = None
    """The idempotency key of the message whose link it is (``None``: an older token, or one
    made for no message)."""


def sign(
    key: bytes, customer_id: str, purpose: str = DEFAULT_PURPOSE, message_key: str | None = None
) -> str:
    """A token letting its holder unsubscribe ``customer_id`` from ``purpose``; ``message_key``
    names the message it is sent in."""
    doc = {"c": customer_id, "p": purpose}
    if message_key:
        doc["m"] = message_key
    return seal(key, "unsubscribe", doc)


def verify(key: bytes, token: str) -> UnsubscribeClaim | None:
    """The claim of a token signed with ``key``; ``None`` when forged, altered or malformed."""
    doc = unseal(key, "unsubscribe", token)
    if doc is None or not isinstance(doc.get("c"), str):
        return None
    message = doc.get("m")
    return UnsubscribeClaim(
        doc["c"],
        str(doc.get("p", DEFAULT_PURPOSE)),
        message if isinstance(message, str) and message else None,
    )


def sign_test(key: bytes, purpose: str = DEFAULT_PURPOSE) -> str:
    """A test send's token: it looks like :func:`sign`'s but names no customer and unsubscribes
    nobody (:func:`verify` refuses it; :func:`is_test` knows it)."""
    return seal(key, "unsubscribe-test", {"p": purpose, "test": True})


def is_test(key: bytes, token: str) -> bool:
    """Whether ``token`` is a test send's (:func:`sign_test`) signed with ``key``."""
    return unseal(key, "unsubscribe-test", token) is not None


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
