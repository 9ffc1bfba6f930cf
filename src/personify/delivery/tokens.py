"""Signed unsubscribe tokens (:mod:`personify.signed`, domain ``unsubscribe``).

The payload names the customer and the purpose (e.g. ``email_marketing``). Anyone holding a
token can unsubscribe that customer from that purpose — nothing else; a changed byte makes it
invalid. The key is the project's ``signing_key`` (``${PERSONIFY_SECRET_KEY}``).
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
    "project_key",
    "sign",
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


def sign(key: bytes, customer_id: str, purpose: str = DEFAULT_PURPOSE) -> str:
    """A token letting its holder unsubscribe ``customer_id`` from ``purpose``."""
    return seal(key, "unsubscribe", {"c": customer_id, "p": purpose})


def verify(key: bytes, token: str) -> UnsubscribeClaim | None:
    """The claim of a token signed with ``key``; ``None`` when forged, altered or malformed."""
    doc = unseal(key, "unsubscribe", token)
    if doc is None or not isinstance(doc.get("c"), str):
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
