"""Field-level encryption at rest: AES-256-GCM under a key ring, with key rotation.

A key ring is written ``ID:BASE64,ID:BASE64,…`` (each key 32 random bytes, base64; the *first*
encrypts, every one decrypts) and comes from the environment — ``privacy.encryption_keys:
${PERSONIFY_ENCRYPTION_KEYS}``. ``personify privacy keygen`` prints a new key.

An encrypted value is text, so it fits the column it replaces: ``enc1:ID:BASE64(nonce‖ciphertext)``
— a fresh 96-bit nonce per value, and the field's name (``table.column``) as associated data, so
a ciphertext copied into another column does not decrypt. Rotation: put a new key first, keep the
old ones, run ``personify privacy rotate-keys`` (re-encrypts every value under an older key), then
drop the old keys.

Lookups by an encrypted value use a *blind index* instead: a keyed hash of the normalized value
(:func:`personify.privacy.hashing.subject_hash`), stored beside it — equality without decryption.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from personify.config import Project
from personify.errors import ConfigError, PersonifyError
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import TABLES_BY_NAME

PREFIX = "enc1:"
FIXED_PREFIX = "encd1:"
"""Deterministic tokens (:meth:`KeyRing.encrypt_fixed`): equal values, equal tokens."""
NONCE_BYTES = 12
BLIND_MARK = "#"
"""In a sealed identifier of an input (``orders.email``): ``encd1:ID:BASE64#BLIND`` — the blind
value the identity graph holds for it follows, so SQL still links the row without decrypting."""


class DecryptionError(PersonifyError):
    """A value that cannot be decrypted (unknown key id, altered, or moved to another field)."""


def new_key() -> str:
    """A fresh key, base64 (for a key ring entry ``ID:KEY``)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith((PREFIX, FIXED_PREFIX))


def is_fixed(value: object) -> bool:
    """A deterministic token (:meth:`KeyRing.encrypt_fixed`)."""
    return isinstance(value, str) and value.startswith(FIXED_PREFIX)


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; the first encrypts."""

    keys: tuple[tuple[str, bytes], ...]
    _by_id: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("the encryption key ring is empty", key="privacy.encryption_keys")
        object.__setattr__(self, "_by_id", {kid: AESGCM(k) for kid, k in self.keys})

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """``ID:BASE64,…`` (see the module doc)."""
        keys: list[tuple[str, bytes]] = []
        for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
            kid, sep, b64 = part.partition(":")
            try:
                key = base64.b64decode(b64, validate=True) if sep else b""
            except (binascii.Error, ValueError):
                key = b""
            if not kid or ":" in kid or len(key) != 32:
                raise ConfigError(
                    f"encryption key #{i + 1} is not ID:BASE64 of 32 bytes",
                    key="privacy.encryption_keys",
                    hint="make one with `personify privacy keygen`",
                )
            keys.append((kid, key))
        if len({k for k, _ in keys}) != len(keys):
            raise ConfigError("two encryption keys share an id", key="privacy.encryption_keys")
        return cls(tuple(keys))

    @property
    def active(self) -> str:
        return self.keys[0][0]

    def encrypt(self, value: str, *, field: str) -> str:
        """``value`` encrypted under the active key, bound to ``field``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._by_id[self.active].encrypt(nonce, value.encode("utf-8"), field.encode())
        return f"{PREFIX}{self.active}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def encrypt_fixed(self, value: str, *, field: str, prefix: str = FIXED_PREFIX) -> str:
        """``value`` encrypted under the active key, bound to ``field``, with a nonce derived
        from both (a keyed hash): the same value always gives the same ``encd1:`` token, so SQL
        can still compare, group and join (what the identity graph's inputs and survivorship's
        provenance need); equality is all it reveals — as much as the blind index does."""
        kid, key = self.keys[0]
        nonce_key = hashlib.sha256(b"personify fixed nonce v1\0" + key).digest()
        nonce = hmac.new(nonce_key, f"{field}\0{value}".encode(), hashlib.sha256).digest()
        nonce = nonce[:NONCE_BYTES]
        sealed = self._by_id[kid].encrypt(nonce, value.encode("utf-8"), field.encode())
        return f"{prefix}{kid}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, field: str) -> str:
        """The plain value of ``token`` (plain text passes through unchanged)."""
        if not is_encrypted(token):
            return token
        prefix = FIXED_PREFIX if token.startswith(FIXED_PREFIX) else PREFIX
        kid, _, b64 = token[len(prefix) :].partition(":")
        b64 = b64.partition(BLIND_MARK)[0]  # an identifier's token carries its blind value
        aead = self._by_id.get(kid)
        if aead is None:
            raise DecryptionError(
                f"a value of {field} is encrypted under key {kid!r}, which is not in the ring",
                hint="add the old key back to privacy.encryption_keys (after the active one)",
            )
        try:
            raw = base64.b64decode(b64, validate=True)
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], field.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise DecryptionError(f"a value of {field} does not decrypt (altered?)") from None
        return plain.decode("utf-8")

    def stale(self, token: str) -> bool:
        """Encrypted under a key other than the active one (to re-encrypt)."""
        if is_fixed(token):
            return not token.startswith(f"{FIXED_PREFIX}{self.active}:")
        return is_encrypted(token) and not token.startswith(f"{PREFIX}{self.active}:")


def ring_or_none(text: str | None) -> KeyRing | None:
    return KeyRing.parse(text) if text and text.strip() else None


def split_field(name: str, allowed: Sequence[str]) -> tuple[str, str]:
    """``table.column`` of a configured field, checked against ``allowed``."""
    if name not in allowed:
        raise ConfigError(
            f"{name!r} cannot be encrypted (supported: {', '.join(allowed)})",
            key="privacy.encrypted_fields",
        )
    table, _, column = name.partition(".")
    return table, column


SUBJECT = "messages.subject"
"""A sent email's subject line: rendered for one person, it often carries their name."""
ENCRYPTED_FIELDS: tuple[str, ...] = (
    "consent_history.ip",
    "consent_history.user_agent",
    "consent_history.form",
    SUBJECT,
    "destination_state.record_key",
)
"""Fields encrypted at rest when the project has a key ring (consent proof: where and how a
person gave consent; the subject line of each email sent; the keys a destination keeps to remove
records, ``on_remove: delete``). Other columns feed SQL (identity, segments) and stay plain; see
README."""


def seal_field(ring: KeyRing | None, name: str, value: str | None) -> str | None:
    """``value`` of the field ``name`` (one of :data:`ENCRYPTED_FIELDS`) as stored: encrypted
    under ``ring``, unchanged without one."""
    if ring is None or value is None or is_encrypted(value):
        return value
    return ring.encrypt(value, field=name)


def open_field(ring: KeyRing | None, name: str, value: object) -> object:
    """A stored value of the field ``name`` in plain text; left sealed without the key ring or
    when it does not decrypt (a report shows the token rather than failing)."""
    if ring is None or not is_encrypted(value) or is_fixed(value):
        return value
    try:
        return ring.decrypt(str(value), field=name)
    except DecryptionError:
        return value


def project_ring(project: Project) -> KeyRing | None:
    """The project's key ring (``privacy.encryption_keys``), if configured."""
    secret = project.config.privacy.encryption_keys
    return ring_or_none(secret.reveal() if secret else None)


def rotate(wh: Warehouse, ring: KeyRing) -> dict[str, int]:
    """Encrypt every plain value of :data:`ENCRYPTED_FIELDS` and re-encrypt those under an older
    key, each table in one transaction; returns the count per field."""
    counts: dict[str, int] = {}
    for name in ENCRYPTED_FIELDS:
        table_name, column = name.split(".", 1)
        t = TABLES_BY_NAME[table_name]
        keys = ", ".join(quote(k) for k in t.primary_key)
        col = quote(column)
        rows = wh.fetch(
            f"SELECT {keys}, {col} FROM {quote(table_name)} WHERE {col} IS NOT NULL "
            f"AND {col} NOT LIKE ?",
            [f"{PREFIX}{ring.active}:%"],
        )
        match = " AND ".join(f"{quote(k)} = ?" for k in t.primary_key)
        with wh.transaction():
            for row in rows:
                *key, value = row
                fresh = ring.encrypt(ring.decrypt(str(value), field=name), field=name)
                wh.execute(f"UPDATE {quote(table_name)} SET {col} = ? WHERE {match}", [fresh, *key])
        counts[name] = len(rows)
    return counts
