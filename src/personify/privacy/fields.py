"""Field-level encryption of ``customers`` columns, with a blind index for lookups.

``privacy.encrypted_fields`` names the columns (``customers.email``, ``customers.phone``,
``customers.first_name``, ``customers.last_name``); ``privacy.encryption_keys`` is the key ring
(:mod:`.crypto`: AES-256-GCM, the first key encrypts, every key decrypts).

* **Sealing.** The profile build (batch, real-time, ``serve --recompute``) seals the
  ``customers`` rows it writes before they commit (:func:`seal_customers`): the columns hold
  ``enc1:…`` tokens. The associated data is the column *and the customer id*: a token copied
  into another column or another person's row does not decrypt. The nonce is derived from row,
  column and value, so an unchanged profile rebuilt seals to the same token (no false drift).
* **Inputs and provenance.** ``profile_observations`` values of the configured fields are
  stored as *deterministic* ``encd1:`` tokens (:meth:`FieldCipher.seal_fixed`, associated data
  ``pii.<field>``): equal values give equal tokens, so survivorship still counts and compares
  them in SQL. ``customer_records`` columns are sealed the same way by the privacy stage (and
  by the real-time path for the record it applied); a later pass that re-reads sealed records
  decrypts them into a temporary table first (:func:`personify.profiles.records.readable_records`).
* **Identity graph.** With ``email``/``phone`` encrypted, ``identity_nodes`` and ``identities``
  hold the blind index of those identifiers (:class:`personify.identity.normalize.Blind`,
  computed in SQL), so merges by email still happen; profiles, explanations, exports and erasure
  show or search the addresses recovered from the encrypted observations
  (:func:`plain_identifiers`). Suppression tombstones hash that blind value
  (:func:`personify.privacy.hashing.identifier_hash`).
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

``personify sql`` and ``segments preview`` decrypt what they show (:func:`decrypt_result`; a
``customers`` value when the query selects its row's ``customer_id`` too), masked afterwards for
roles that must not see PII. SQL *conditions* on these columns (segments, ``customer_data``)
still see tokens — filter on other columns.

An order's or ticket's address (``orders.email``, ``tickets.email``) is sealed by the privacy
stage as its deterministic token followed by ``#`` and its blind value
(:func:`seal_input_emails`): identity and stitching read the blind value from it.

Not covered (plain text stays): values inside ``events`` JSON (identify traits) — inputs as the
source sent them. Changing
``privacy.blind_index_key`` changes every blind value: the graph must then be rebuilt from the
inputs (``identity`` rules fingerprint) — rotate-keys alone does not rewrite it.
"""

from __future__ import annotations

import hmac
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from personify import clock
from personify.config import IdentityConfig, Project
from personify.errors import ConfigError
from personify.identity.ids import set_id_key
from personify.identity.normalize import Blind, normalize, set_blind
from personify.privacy.crypto import (
    BLIND_MARK,
    FIXED_PREFIX,
    PREFIX,
    SUBJECT,
    DecryptionError,
    KeyRing,
    is_encrypted,
    is_fixed,
    project_ring,
)
from personify.warehouse.base import UNNEST, Warehouse, quote
from personify.warehouse.schema import FIELD_INDEX
from personify.warehouse.scratch import drop, scratch, temp_table

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
        """An ``enc1:`` token bound to the row. Its nonce is derived from the row, column and
        value (:meth:`~.crypto.KeyRing.encrypt_fixed`): rebuilding an unchanged profile gives
        the same token (a recompute sees no drift), while the same address in two rows still
        gives two unrelated tokens."""
        return self.ring.encrypt_fixed(value, field=self.field(column, customer_id), prefix=PREFIX)

    def open(self, column: str, customer_id: str, value: str) -> str:
        if is_fixed(value):
            return self.open_fixed(column, value)
        return self.ring.decrypt(value, field=self.field(column, customer_id))

    @staticmethod
    def fixed_field(column: str) -> str:
        """The associated data of a deterministic token of ``column`` (any table's)."""
        return f"pii.{column}"

    def seal_fixed(self, column: str, value: str) -> str:
        """The deterministic ``encd1:`` token of ``value`` (inputs and provenance: records,
        observations), the same for the same value wherever it is stored."""
        return self.ring.encrypt_fixed(value, field=self.fixed_field(column))

    def open_fixed(self, column: str, value: str) -> str:
        return self.ring.decrypt(value, field=self.fixed_field(column))

    @property
    def blind(self) -> Blind:
        """The identity graph's blind identifiers (same key and value as :meth:`index`)."""
        return Blind(self.index_key, self.indexed)

    def index(self, kind: str, value: str) -> str:
        """The blind index of ``value`` (an ``email`` or ``phone``, raw or normalized)."""
        normal = normalize(kind, value, self.identity) or value.strip().lower()
        return self.blind.hash(kind, normal)

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
_PROJECTS: weakref.WeakKeyDictionary[Warehouse, Project] = weakref.WeakKeyDictionary()


def attach(wh: Warehouse, project: Project) -> None:
    """Remember the project's keys for ``wh`` (the session does, when it opens it): the cipher,
    so code reading ``customers`` rows decrypts without the project at hand, its blind index,
    and the key new customer ids are minted with (:func:`personify.identity.ids.set_id_key`).
    The key ring itself (:func:`ring_of`) is read from the project when it is needed."""
    _PROJECTS[wh] = project
    secret = project.config.identity.id_key or project.config.signing_key
    set_id_key(wh, secret.reveal() if secret else None)  # new customer ids are keyed by it
    cipher = from_project(project)
    if cipher is None:
        _ATTACHED.pop(wh, None)
        set_blind(wh, None)
    else:
        _ATTACHED[wh] = cipher
        set_blind(wh, cipher.blind if cipher.indexed else None)


def project_of(wh: Warehouse) -> Project | None:
    """The project attached to ``wh`` (:func:`attach`), if any."""
    return _PROJECTS.get(wh)


def cipher_of(wh: Warehouse) -> FieldCipher | None:
    return _ATTACHED.get(wh)


def ring_of(wh: Warehouse) -> KeyRing | None:
    """The key ring of the project attached to ``wh`` (:func:`attach`): what decrypts the
    fields encrypted whenever there is one (:data:`~.crypto.ENCRYPTED_FIELDS`: consent proof,
    subject lines)."""
    project = _PROJECTS.get(wh)
    return project_ring(project) if project is not None else None


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


def lookup_many(wh: Warehouse, kind: str, values: Iterable[str]) -> dict[str, list[str]]:
    """:func:`lookup` of each of ``values`` in one statement: value → its customer ids (values
    no customer holds are left out; empty without encrypted fields)."""
    cipher = cipher_of(wh)
    if cipher is None or kind not in cipher.indexed:
        return {}
    hashes: dict[str, list[str]] = {}
    for value in values:
        if value.strip():
            hashes.setdefault(cipher.index(kind, value), []).append(value)
    if not hashes:
        return {}
    found: dict[str, list[str]] = {}
    for cid, value_hash in wh.fetch(
        "SELECT customer_id, value_hash FROM field_index "
        f"WHERE kind = ? AND value_hash IN (SELECT {UNNEST}) ORDER BY 1",
        [kind, list(hashes)],
    ):
        for value in hashes[str(value_hash)]:
            found.setdefault(value, []).append(str(cid))
    return found


def _write(wh: Warehouse, cipher: FieldCipher, rows: list[tuple[Any, ...]]) -> None:
    """Store ``rows`` (customer_id, *the configured columns, sealed) — one UPDATE per batch."""
    cols = cipher.columns
    values = ", ".join(f"{UNNEST} AS {quote(c)}" for c in cols)
    sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in cols)
    wh.execute(
        f"UPDATE customers SET {sets} FROM (SELECT {UNNEST} AS cid, "
        f"{values}) AS v WHERE customers.customer_id = v.cid",
        [[r[0] for r in rows], *([r[i + 1] for r in rows] for i in range(len(cols)))],
    )


def _index(wh: Warehouse, entries: list[tuple[str, str, str | None]], at: datetime) -> None:
    """Blind index entries ``(customer_id, kind, hash or None)``: stored, or removed (None)."""
    keep = [e for e in entries if e[2] is not None]
    gone = [e for e in entries if e[2] is None]
    if gone:
        wh.execute(
            f"DELETE FROM field_index WHERE (customer_id || '|' || kind) IN (SELECT {UNNEST})",
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
        todo = f"({todo}) AND customer_id IN (SELECT {UNNEST})"
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
                if is_fixed(text):  # the build copied an observation's token: bind it to the row
                    text = plain
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
            f"DELETE FROM field_index WHERE {gone} AND customer_id IN (SELECT {UNNEST})",
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
    (``personify privacy rotate-keys``); deterministic tokens of records and observations under
    an older key are re-encrypted too (``reencrypted_inputs``)."""
    counts = _pass(wh, cipher, everything=True)
    counts["reencrypted_inputs"] = _rotate_fixed(wh, cipher)
    return counts


def _rotate_fixed(wh: Warehouse, cipher: FieldCipher) -> int:
    """``encd1:`` tokens under an older key, re-encrypted under the active one (once per distinct
    token, one UPDATE per column and field), so equal values stay equal tokens."""
    from personify.warehouse.schema import CUSTOMER_RECORDS

    current = f"{FIXED_PREFIX}{cipher.ring.active}:%"
    targets: list[tuple[str, str, str, str | None]] = [
        (RECORD_TABLE, c, c, None) for c in cipher.columns if c in CUSTOMER_RECORDS.column_names
    ]
    targets += [("profile_observations", "value", f, f) for f in cipher.columns]
    done = 0
    with wh.transaction():
        for table, column, field, only in targets:
            col = quote(column)
            cond, params = ("field = ?", [only]) if only else ("TRUE", list[object]())
            rows = wh.fetch(
                f"SELECT DISTINCT {col} FROM {quote(table)} WHERE {col} LIKE ? "
                f"AND {col} NOT LIKE ? AND ({cond})",
                [f"{FIXED_PREFIX}%", current, *params],
            )
            if not rows:
                continue
            old = sorted({str(r[0]) for r in rows})
            new = [cipher.seal_fixed(field, cipher.open_fixed(field, v)) for v in old]
            mapping = pa.table({"plain": old, "sealed": new})
            done += _replace(wh, table, column, mapping, (cond, params))
        if "email" in cipher.indexed:  # orders'/tickets' addresses: new token and blind value
            for table in SEALED_INPUT_EMAILS:
                rows = wh.fetch(f"SELECT DISTINCT email FROM {table} WHERE email LIKE 'encd1:%'")
                old = sorted({str(r[0]) for r in rows})
                if not old:
                    continue
                new = [_sealed_email(cipher, cipher.open_fixed("email", v)) for v in old]
                mapping = pa.table({"plain": old, "sealed": new})
                done += _replace(wh, table, "email", mapping, ("m.sealed <> m.plain", ()))
    return done


# ------------------------------------------------ inputs and provenance: deterministic tokens
RECORD_TABLE = "customer_records"
_MAP = "_pii_map"
_MAP_TABLE = scratch(_MAP, plain="VARCHAR", sealed="VARCHAR")


def _distinct_map(values: list[str], convert: Callable[[str], str]) -> pa.Table:
    """``(plain, sealed)`` — ``convert`` of each distinct value, once per value."""
    unique = sorted(set(values))
    return pa.table({"plain": unique, "sealed": [convert(v) for v in unique]})


def _replace(
    wh: Warehouse,
    table: str,
    column: str,
    mapping: pa.Table,
    where: tuple[str, Sequence[object]] = ("TRUE", ()),
) -> int:
    """Each value of ``table.column`` (in the rows ``where`` selects) that is a ``plain`` of
    ``mapping`` replaced by its ``sealed``, in one set-based UPDATE; the rows changed."""
    name, col = quote(table), quote(column)
    temp_table(wh, _MAP_TABLE, mapping)
    changed = wh.execute(
        f"UPDATE {name} SET {col} = m.sealed FROM {_MAP} m "
        f"WHERE {name}.{col} = m.plain AND ({where[0]})",
        list(where[1]),
    )
    drop(wh, _MAP)
    return max(changed, 0)


def seal_column(
    wh: Warehouse,
    cipher: FieldCipher,
    table: str,
    column: str,
    where: tuple[str, tuple[object, ...]] = ("TRUE", ()),
    *,
    field: str | None = None,
) -> int:
    """Replace every plain value of ``table.column`` (in the rows ``where`` selects) by its
    deterministic token (once per distinct value in Python, then one set-based UPDATE);
    returns the values sealed. ``field``: the field the values are of, when the column is not
    named after it (an observation's ``value``)."""
    of = field or column
    col = quote(column)
    rows = wh.fetch(
        f"SELECT DISTINCT {col} FROM {quote(table)} WHERE {col} IS NOT NULL "
        f"AND {col} NOT LIKE ? AND {col} NOT LIKE ? AND ({where[0]})",
        [f"{FIXED_PREFIX}%", f"{PREFIX}%", *where[1]],
    )
    if not rows:
        return 0
    mapping = _distinct_map([str(r[0]) for r in rows], lambda v: cipher.seal_fixed(of, v))
    return _replace(wh, table, column, mapping, where)


SEALED_INPUT_EMAILS: tuple[str, ...] = ("orders", "tickets")
"""Inputs whose ``email`` column is sealed (with its blind value) when ``customers.email`` is
encrypted."""


def seal_input_emails(
    wh: Warehouse,
    cipher: FieldCipher,
    where: Mapping[str, tuple[str, Sequence[object]]] | None = None,
) -> int:
    """Seal ``orders.email`` and ``tickets.email`` (the privacy stage, after identity and the
    profile build read the new rows): each distinct address becomes its deterministic token
    followed by ``#`` and its blind value (:data:`~.crypto.BLIND_MARK`), which is what identity
    resolution and stitching match on (:func:`personify.identity.normalize.sealed_or_blind_sql`)
    — so a re-resolution still links these rows without decrypting them.

    ``where`` (table → condition): only those tables' rows the condition selects — the
    real-time pass seals the orders and tickets it read, not every table (default: every row
    of both)."""
    if "email" not in cipher.indexed:
        return 0

    def seal(value: str) -> str:
        return _sealed_email(cipher, value)

    sealed = 0
    with wh.transaction():
        for table in SEALED_INPUT_EMAILS:
            rows_where = ("TRUE", ()) if where is None else where.get(table)
            if rows_where is None:
                continue
            rows = wh.fetch(
                f"SELECT DISTINCT email FROM {table} WHERE email IS NOT NULL "
                f"AND email NOT LIKE ? AND email NOT LIKE ? AND ({rows_where[0]})",
                [f"{FIXED_PREFIX}%", f"{PREFIX}%", *rows_where[1]],
            )
            if not rows:
                continue
            mapping = _distinct_map([str(r[0]) for r in rows], seal)
            sealed += _replace(wh, table, "email", mapping, rows_where)
    return sealed


def _sealed_email(cipher: FieldCipher, value: str) -> str:
    """An input's address sealed: its deterministic token, then ``#`` and its blind value."""
    token = cipher.seal_fixed("email", value)
    normal = normalize("email", value, cipher.identity)
    return f"{token}{BLIND_MARK}{cipher.blind.hash('email', normal)}" if normal else token


def seal_records(
    wh: Warehouse, cipher: FieldCipher, where: tuple[str, tuple[object, ...]] = ("TRUE", ())
) -> int:
    """Seal the configured columns of ``customer_records`` (the privacy stage: identity and the
    profile build have read the new records in plain text by then; re-reads decrypt, see
    :func:`personify.profiles.records.readable_records`)."""
    from personify.warehouse.schema import CUSTOMER_RECORDS

    sealed = 0
    with wh.transaction():
        for column in cipher.columns:
            if column in CUSTOMER_RECORDS.column_names:
                sealed += seal_column(wh, cipher, RECORD_TABLE, column, where)
    return sealed


def seal_observations(wh: Warehouse, cipher: FieldCipher) -> int:
    """Seal observation values of the configured fields still in plain text (stored before
    encryption was turned on): the provenance then holds tokens only, equal values equal."""
    sealed = 0
    with wh.transaction():
        for field in cipher.columns:
            sealed += seal_column(
                wh, cipher, "profile_observations", "value", ("field = ?", (field,)), field=field
            )
    return sealed


def open_array(cipher: FieldCipher, column: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` with deterministic tokens decrypted (plain values pass), once per distinct
    token: :func:`pyarrow.compute.unique`, then a take."""
    import pyarrow.compute as pc

    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = arr.cast(pa.string())
    unique = pc.unique(arr)
    plain = pa.array(
        [
            None if v is None else cipher.open_fixed(column, v) if is_fixed(v) else v
            for v in unique.to_pylist()
        ],
        pa.string(),
    )
    return pc.take(plain, pc.index_in(arr, value_set=unique))


def fixed_tokens(cipher: FieldCipher, column: str, values: list[str]) -> pa.Table:
    """``(plain, token)`` for the distinct ``values`` of ``column``."""
    return _distinct_map(values, lambda v: cipher.seal_fixed(column, v))


def plain_identifiers(wh: Warehouse, customer_ids: list[str]) -> dict[tuple[str, str], str]:
    """``(kind, blind value) → plain value`` for the emails and phones the graph keeps blind
    for these customers, recovered from what is stored encrypted (their observations of the
    ``email``/``phone`` fields, their ``customers`` row): how a profile, an export and an erasure
    show and search for the addresses themselves. Empty without a blind graph; an identifier
    no observation carries (an email only a ticket gave) stays blind."""
    cipher = cipher_of(wh)
    if cipher is None or not cipher.indexed or not customer_ids:
        return {}
    blind = cipher.blind
    kinds = list(blind.kinds)
    marks = ", ".join("?" for _ in kinds)
    rows = wh.fetch(
        "SELECT DISTINCT o.field, o.value FROM profile_observations o JOIN identity_nodes n "
        f"ON n.node_id = o.node_id WHERE n.customer_id IN (SELECT {UNNEST}) "
        f"AND o.field IN ({marks})",
        [sorted(customer_ids), *kinds],
    )
    plains = {(str(f), cipher.open_fixed(str(f), str(v))) for f, v in rows}
    for row in decrypt_rows(
        wh,
        (
            dict(r)
            for r in wh.fetch_arrow(
                f"SELECT customer_id, {', '.join(cipher.columns)} FROM customers "
                f"WHERE customer_id IN (SELECT {UNNEST})",
                [sorted(customer_ids)],
            ).to_pylist()
        ),
        strict=False,
    ):
        plains |= {(k, str(row[k])) for k in kinds if row.get(k) and not is_encrypted(row[k])}
    out: dict[tuple[str, str], str] = {}
    for kind, plain in sorted(plains):
        normal = normalize(kind, plain, cipher.identity)
        if normal:
            out[(kind, blind.hash(kind, normal))] = normal
    return out


def open_value(wh: Warehouse, column: str, value: Any) -> Any:
    """A stored input or provenance value (a record's column, an observation of ``column``) in
    plain text: deterministic tokens decrypted; anything else unchanged."""
    if not is_fixed(value):
        return value
    cipher = cipher_of(wh)
    return cipher.open_fixed(column, str(value)) if cipher is not None else value


def show_identifiers(wh: Warehouse, customer_ids: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace, in ``rows`` (``kind``/``value`` dicts, as profiles and exports show identities),
    blind values by the addresses they stand for (:func:`plain_identifiers`)."""
    plain = plain_identifiers(wh, customer_ids)
    if not plain:
        return
    for row in rows:
        for kind, value in (("kind", "value"), ("other_kind", "other_value")):
            if kind in row and (row[kind], row.get(value)) in plain:
                row[value] = plain[(row[kind], row[value])]


def decrypt_result(
    wh: Warehouse, columns: list[str], rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """A query result (``personify sql``, a segment preview) with the encrypted values it shows
    in plain text, for people allowed to see raw PII (mask afterwards for the others).

    A deterministic ``encd1:`` token (records, observations) decrypts on its own. A ``customers``
    token (``enc1:``) is bound to its row, so it decrypts when the result also selects that
    row's ``customer_id`` (under that name); otherwise it stays sealed. A subject line
    (``messages.subject``, sealed under the key ring) decrypts on its own too; consent proof
    stays sealed. Values that do not decrypt stay as they are."""
    cipher = cipher_of(wh)
    ring = ring_of(wh)
    if cipher is None and ring is None:
        return rows
    lowered = [c.lower().rsplit(".", 1)[-1] for c in columns]
    cid_at = lowered.index("customer_id") if "customer_id" in lowered else None

    def order(name: str, columns: Sequence[str]) -> list[str]:
        # the column named like a configured field first (``email``, ``c_email``), then the rest
        first = [c for c in columns if name == c or name.endswith(f"_{c}")]
        return first + [c for c in columns if c not in first]

    def by_ring(value: str) -> str:
        assert ring is not None
        try:
            return ring.decrypt(value, field=SUBJECT)
        except DecryptionError:
            return value

    out = []
    for row in rows:
        cid = str(row[cid_at]) if cid_at is not None and row[cid_at] is not None else None
        values = list(row)
        for i, value in enumerate(values):
            if not is_encrypted(value):
                continue
            for column in order(lowered[i], cipher.columns if cipher is not None else ()):
                assert cipher is not None
                try:
                    if is_fixed(value):
                        values[i] = cipher.open_fixed(column, str(value))
                    elif cid is not None:
                        values[i] = cipher.open(column, cid, str(value))
                    else:
                        break
                    break
                except DecryptionError:
                    continue
            if ring is not None and values[i] == value and not is_fixed(value):
                values[i] = by_ring(str(value))
        out.append(tuple(values))
    return out
