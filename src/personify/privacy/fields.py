"""Field-level encryption of ``customers`` columns, with a blind index for lookups.

``privacy.encrypted_fields`` names the columns (``customers.email``, ``customers.phone``,
``customers.first_name``, ``customers.last_name``); ``privacy.encryption_keys`` is the key ring
(:mod:`.crypto`: AES-256-GCM, the first key encrypts, every key decrypts).

* **Sealing.** The profile build writes ``customers`` rows in SQL, in plain text; the privacy
  stage of every run (right after it) encrypts every plain value of the configured columns
  (:func:`seal_customers`), so at rest — between runs, in backups of the warehouse — the columns
  hold ``enc1:…`` tokens. The associated data is the column *and the customer id*: a token copied
  into another column or another person's row does not decrypt.
* **Blind index.** For ``email`` and ``phone`` the keyed hash (HMAC-SHA256 under
  ``privacy.blind_index_key``, default derived from ``signing_key``) of the value normalized as
  the identity graph normalizes it goes to ``field_index`` — equality lookup without decrypting
  (:func:`lookup`).
* **Decrypt on read, one seam.** :func:`decrypt_row` / :func:`decrypt_rows` with the cipher the
  session attached to its warehouse (:func:`attach`, :func:`cipher_of`): used where plain text is
  needed — the render context (:mod:`personify.messages.context`: rendering and sending an email,
  the envelope's address), the profile (``personify profile``, ``GET /v1/profiles``), the
  unsubscribe's address tombstone, bounce lookups, and subject access exports.
* **Rotation.** Put a new key first in the ring and run ``personify privacy rotate-keys``: values
  under older keys are re-encrypted and every blind index recomputed (also the way to change the
  blind index key), then the old keys can go.

The real-time path (``personify serve``) seals the rows it rebuilds in the same transaction
(:func:`seal_customers` with their ids).

Not covered (plain text stays): SQL over these columns (segments, ``personify sql``, the
``customer_data`` view see ``enc1:`` tokens — filter on other columns), and the identity graph
(``identities``, ``identity_nodes``) and provenance (``profile_observations``), which hold the
normalized identifiers identity resolution matches on.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from personify import clock
from personify.config import IdentityConfig, Project
from personify.errors import ConfigError
from personify.identity.normalize import normalize
from personify.privacy.crypto import PREFIX, DecryptionError, KeyRing, is_encrypted, project_ring
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import FIELD_INDEX

log = logging.getLogger("personify.privacy.fields")

CUSTOMER_FIELDS: tuple[str, ...] = (
    "customers.email",
    "customers.phone",
    "customers.first_name",
    "customers.last_name",
)
INDEXED: tuple[str, ...] = ("email", "phone")
"""Columns (also the identifier kind) that get a blind index."""
_BATCH = 5_000


@dataclass(frozen=True)
class FieldCipher:
    """The project's encrypted ``customers`` columns, key ring and blind index key."""

    ring: KeyRing
    index_key: bytes
    columns: tuple[str, ...]
    identity: IdentityConfig

    @staticmethod
    def field(column: str, customer_id: str) -> str:
        """The associated data: the column and the row's customer id."""
        return f"customers.{column}#{customer_id}"

    def seal(self, column: str, customer_id: str, value: str) -> str:
        return self.ring.encrypt(value, field=self.field(column, customer_id))

    def open(self, column: str, customer_id: str, value: str) -> str:
        return self.ring.decrypt(value, field=self.field(column, customer_id))

    def index(self, kind: str, value: str) -> str:
        """The blind index of ``value`` (an ``email`` or ``phone``, raw or normalized)."""
        normal = normalize(kind, value, self.identity) or value.strip().lower()
        return hmac.new(self.index_key, f"{kind}\0{normal}".encode(), hashlib.sha256).hexdigest()

    @property
    def indexed(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c in INDEXED)

    def decrypt_row(self, row: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
        """``row`` (a ``customers`` row) with its encrypted columns in plain text. A value that
        does not decrypt raises :class:`DecryptionError`, or with ``strict=False`` stays sealed
        (the caller then fails that one row: an ``enc1:`` address is no address)."""
        out = dict(row)
        customer_id = str(out.get("customer_id") or "")
        for column in self.columns:
            value = out.get(column)
            if is_encrypted(value):
                try:
                    out[column] = self.open(column, customer_id, str(value))
                except DecryptionError:
                    if strict:
                        raise
                    log.warning("a customers.%s value does not decrypt; left sealed", column)
        return out


def from_project(project: Project) -> FieldCipher | None:
    """The project's :class:`FieldCipher`; ``None`` when no column is configured."""
    privacy = project.config.privacy
    columns = tuple(f.split(".", 1)[1] for f in privacy.encrypted_fields)
    if not columns:
        return None
    ring = project_ring(project)
    if ring is None:
        raise ConfigError(
            "privacy.encrypted_fields needs a key ring",
            file=str(project.file),
            key="privacy.encryption_keys",
            hint="set privacy.encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS} (make a key with "
            "`personify privacy keygen`)",
        )
    return FieldCipher(ring, index_key(project), columns, project.config.identity)


def index_key(project: Project) -> bytes:
    """``privacy.blind_index_key``, else a key derived from ``signing_key``."""
    explicit = project.config.privacy.blind_index_key
    if explicit:
        return explicit.reveal().encode("utf-8")
    secret = project.config.signing_key
    if not secret:
        raise ConfigError(
            "the blind index of encrypted fields needs a key",
            file=str(project.file),
            key="privacy.blind_index_key",
            hint="set privacy.blind_index_key: ${PERSONIFY_BLIND_INDEX_KEY}, or signing_key",
        )
    return hmac.new(secret.reveal().encode("utf-8"), b"personify blind index v1", "sha256").digest()


_ATTACHED: weakref.WeakKeyDictionary[Warehouse, FieldCipher] = weakref.WeakKeyDictionary()


def attach(wh: Warehouse, project: Project) -> None:
    """Remember the project's cipher for ``wh`` (the session does, when it opens it), so code
    reading ``customers`` rows decrypts without the project at hand."""
    cipher = from_project(project)
    if cipher is None:
        _ATTACHED.pop(wh, None)
    else:
        _ATTACHED[wh] = cipher


def cipher_of(wh: Warehouse) -> FieldCipher | None:
    return _ATTACHED.get(wh)


def decrypt_rows(
    wh: Warehouse, rows: Iterable[Mapping[str, Any]], *, strict: bool = True
) -> list[dict[str, Any]]:
    """``customers`` rows in plain text (unchanged without encrypted fields)."""
    cipher = cipher_of(wh)
    if cipher is None:
        return [dict(r) for r in rows]
    return [cipher.decrypt_row(r, strict=strict) for r in rows]


def decrypt_row(wh: Warehouse, row: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return decrypt_rows(wh, [row], strict=strict)[0]


def lookup(wh: Warehouse, kind: str, value: str) -> list[str]:
    """Customer ids whose encrypted ``kind`` column (``email``/``phone``) equals ``value``,
    through the blind index (empty without encrypted fields)."""
    cipher = cipher_of(wh)
    if cipher is None or kind not in cipher.indexed or not value.strip():
        return []
    rows = wh.fetch(
        "SELECT customer_id FROM field_index WHERE kind = ? AND value_hash = ? ORDER BY 1",
        [kind, cipher.index(kind, value)],
    )
    return [str(r[0]) for r in rows]


def _write(wh: Warehouse, cipher: FieldCipher, rows: list[tuple[Any, ...]]) -> None:
    """Store ``rows`` (customer_id, *the configured columns, sealed) — one UPDATE per batch."""
    cols = cipher.columns
    values = ", ".join(f"unnest(CAST(? AS VARCHAR[])) AS {quote(c)}" for c in cols)
    sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in cols)
    wh.execute(
        f"UPDATE customers SET {sets} FROM (SELECT unnest(CAST(? AS VARCHAR[])) AS cid, "
        f"{values}) AS v WHERE customers.customer_id = v.cid",
        [[r[0] for r in rows], *([r[i + 1] for r in rows] for i in range(len(cols)))],
    )


def _index(wh: Warehouse, entries: list[tuple[str, str, str | None]], at: datetime) -> None:
    """Blind index entries ``(customer_id, kind, hash or None)``: stored, or removed (None)."""
    keep = [e for e in entries if e[2] is not None]
    gone = [e for e in entries if e[2] is None]
    if gone:
        wh.execute(
            "DELETE FROM field_index WHERE (customer_id || '|' || kind) "
            "IN (SELECT unnest(CAST(? AS VARCHAR[])))",
            [[f"{c}|{k}" for c, k, _ in gone]],
        )
    if keep:
        wh.load(
            FIELD_INDEX,
            pa.table(
                {
                    "customer_id": [e[0] for e in keep],
                    "kind": [e[1] for e in keep],
                    "value_hash": [e[2] for e in keep],
                    "updated_at": pa.array([at] * len(keep), pa.timestamp("us", tz="UTC")),
                }
            ),
            on_conflict="update",
        )


def _pass(
    wh: Warehouse, cipher: FieldCipher, *, everything: bool, ids: list[str] | None = None
) -> dict[str, int]:
    """Seal plain values (``everything``: also re-encrypt values under older keys and recompute
    every blind index) — of every customer, or of ``ids``. Batches by customer id, each in its
    own transaction (joined to an enclosing one)."""
    cols = cipher.columns
    select = ", ".join(quote(c) for c in cols)
    if everything:
        todo = " OR ".join(f"{quote(c)} IS NOT NULL" for c in cols)
    else:
        todo = " OR ".join(f"({quote(c)} IS NOT NULL AND {quote(c)} NOT LIKE ?)" for c in cols)
    marks: list[Any] = [] if everything else [f"{PREFIX}%"] * len(cols)
    if ids is not None:
        todo = f"({todo}) AND customer_id IN (SELECT unnest(CAST(? AS VARCHAR[])))"
        marks.append(sorted(ids))
    counts = {"rows": 0, "sealed": 0, "reencrypted": 0, "indexed": 0}
    after = ""
    at = clock.now()
    while True:
        batch = wh.fetch(
            f"SELECT customer_id, {select} FROM customers WHERE customer_id > ? AND ({todo}) "
            f"ORDER BY customer_id LIMIT {_BATCH}",
            [after, *marks],
        )
        if not batch:
            break
        after = str(batch[-1][0])
        sealed: list[tuple[Any, ...]] = []
        entries: list[tuple[str, str, str | None]] = []
        for customer_id, *values in batch:
            cid = str(customer_id)
            out: list[Any] = [cid]
            for column, value in zip(cols, values, strict=True):
                if value is None:
                    out.append(None)
                    if column in INDEXED:
                        entries.append((cid, column, None))
                    continue
                text = str(value)
                plain = cipher.open(column, cid, text) if is_encrypted(text) else text
                if not is_encrypted(text):
                    out.append(cipher.seal(column, cid, plain))
                    counts["sealed"] += 1
                elif cipher.ring.stale(text):
                    out.append(cipher.seal(column, cid, plain))
                    counts["reencrypted"] += 1
                else:
                    out.append(text)
                if column in INDEXED and (everything or not is_encrypted(text)):
                    entries.append((cid, column, cipher.index(column, plain)))
            sealed.append(tuple(out))
        with wh.transaction():
            _write(wh, cipher, sealed)
            _index(wh, entries, at)
        counts["rows"] += len(batch)
        counts["indexed"] += sum(1 for e in entries if e[2] is not None)
    # customers gone (merged away, erased): their index entries too
    gone = "customer_id NOT IN (SELECT customer_id FROM customers)"
    if ids is None:
        wh.execute(f"DELETE FROM field_index WHERE {gone}")
    elif ids:
        wh.execute(
            f"DELETE FROM field_index WHERE {gone} "
            "AND customer_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
            [sorted(ids)],
        )
    return counts


def seal_customers(
    wh: Warehouse, cipher: FieldCipher, ids: list[str] | None = None
) -> dict[str, int]:
    """Encrypt the plain values of the configured columns and index them: every customer's
    (the privacy stage) or those of ``ids`` (the real-time path, after it rebuilt them)."""
    return _pass(wh, cipher, everything=False, ids=ids)


def rotate_customers(wh: Warehouse, cipher: FieldCipher) -> dict[str, int]:
    """Re-encrypt values under older keys, seal plain ones and recompute every blind index
    (``personify privacy rotate-keys``)."""
    return _pass(wh, cipher, everything=True)
