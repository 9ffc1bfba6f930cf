"""Keyed hashes of identifiers: how Personify remembers *that* an address was erased or
suppressed without keeping the address.

``subject_hash(key, kind, value)`` is HMAC-SHA256 (hex) over ``kind`` and the value normalized
as the identity graph normalizes it, so the same person typed differently (``Ann@Example.org ``)
hashes the same. The key is the project's ``signing_key`` (``${PERSONIFY_SECRET_KEY}``): without
it nobody can test a guessed address against the table.
"""

from __future__ import annotations

import hashlib
import hmac

from personify.config import IdentityConfig, Project
from personify.errors import ConfigError
from personify.identity.normalize import graph_value, normalize

HASHED_KINDS: tuple[str, ...] = ("email", "phone")
"""Identifier kinds a tombstone is kept for (what re-ingested data reaches a person by)."""


def project_key(project: Project) -> bytes:
    """The project's hashing key (its ``signing_key``); a :class:`ConfigError` without one."""
    secret = project.config.signing_key
    if not secret:
        raise ConfigError(
            "privacy needs a signing_key to hash identifiers",
            file=str(project.file),
            key="signing_key",
            hint="set signing_key: ${PERSONIFY_SECRET_KEY} in personify.yml and the variable "
            "in .env",
        )
    return secret.reveal().encode("utf-8")


def subject_hash(key: bytes, kind: str, value: str, config: IdentityConfig | None = None) -> str:
    """HMAC-SHA256 (hex) of the normalized ``value`` of ``kind`` (raw values are normalized
    first; an unreadable value is hashed trimmed and lower-cased)."""
    normal = normalize(kind, value, config or IdentityConfig()) or value.strip().lower()
    return hmac.new(key, f"{kind}\0{normal}".encode(), hashlib.sha256).hexdigest()


def hash_normalized(key: bytes, kind: str, normalized: str) -> str:
    """:func:`subject_hash` of a value already normalized (an ``identity_nodes.value``)."""
    return hmac.new(key, f"{kind}\0{normalized}".encode(), hashlib.sha256).hexdigest()


def optional_key(project: Project) -> bytes | None:
    """The hashing key when the project has one (audit entries fall back to a plain hash)."""
    secret = project.config.signing_key
    return secret.reveal().encode("utf-8") if secret else None


def identifier_hash(
    wh: object, key: bytes, kind: str, value: str, config: IdentityConfig | None = None
) -> str:
    """The tombstone hash of a raw identifier as *this warehouse's graph* holds it:
    :func:`subject_hash`, except that an email or phone the graph keeps blind (encrypted
    ``customers`` columns, :func:`personify.identity.normalize.blind_of`) is hashed in its blind
    form — the value :func:`hash_normalized` sees in ``identity_nodes`` when the privacy stage
    re-links tombstones, so both meet without the address being kept anywhere."""
    normal = normalize(kind, value, config or IdentityConfig()) or value.strip().lower()
    return hash_normalized(key, kind, graph_value(wh, kind, normal))
