"""A destination's state (``destination_state``): each record's keyed hash, its row's hash
when the API last took it, its status — and, for a destination that removes records, its key
encrypted. What a person was pushed as (export) and forgetting them (erasure) read it here."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from personify import clock
from personify.config import Project, RestDestination
from personify.errors import WarehouseError
from personify.identity.ids import id_key_of
from personify.privacy.crypto import DecryptionError, KeyRing
from personify.sources.schedule import advisory_key, holds
from personify.warehouse.base import UNNEST, Warehouse

if TYPE_CHECKING:
    from personify.destinations.shared import Held

log = logging.getLogger(__name__)

KEY: Final = "__personify_key"
"""The column of a staged model row holding its key's keyed hash (``key_hash`` in the state)."""
HASH: Final = "__personify_row"
"""The column of a staged model row holding its MD5 (``row_hash`` in the state)."""
RECORD_KEY: Final = "destination_state.record_key"
"""The field (associated data) of the encrypted keys kept for removals; ``personify privacy
rotate-keys`` re-encrypts them (:data:`personify.privacy.crypto.ENCRYPTED_FIELDS`)."""
ERASED: Final = "erased"
"""The status of a record whose person was erased, left to remove at the API: only its key's
keyed hash and its encrypted key (an ad audience's: the hashed identifiers) are kept; the next
push removes it first, whatever the model says and regardless of ``max_removals``."""

IDENTIFIERS: Final = "destination_identifiers"
"""An ad audience's records' identifiers, as keyed hashes (:mod:`.shared`): dropped with the
record's state."""

LOST_KEY: Final = "privacy.encryption_keys lost the key"
"""Words of the error kept on a record whose kept key (or identifiers) no longer decrypt: its
removal can never be sent until that key is back (:func:`~.erasures.stranded_removals`
counts them)."""


MERGED: Final = "HubSpot merged its contact with another"
"""Words of the error kept on a HubSpot record whose contact was merged with another (it holds
other email addresses too): archiving it would archive the other person's record with it, so
it is not archived — a person removes it, or the address, at HubSpot
(:func:`~.erasures.stranded_removals` counts an erasure's)."""


NO_IDENTIFIERS: Final = "no identifiers were kept for it"
"""Words of the error kept on an ad audience's record pushed before the destination was an
audience: its removal cannot name the person (:func:`~.erasures.stranded_removals` counts them)."""


def rest_destinations(project: Project) -> list[RestDestination]:
    """The project's reverse-ETL destinations (``kind: rest``: those with records in
    ``destination_state``), not its events destinations."""
    return [d for d in project.config.destinations if isinstance(d, RestDestination)]


def run_name(name: str) -> str:
    """The ``source_state`` name of a destination's runs (never a source's: the prefix)."""
    return f"destination:{name}"


def still_pushing(wh: Warehouse, name: str) -> None:
    """Raise :class:`~personify.errors.WarehouseError` when destination ``name``'s push in this
    process took its PostgreSQL lock and lost it with the connection that held it (another push
    of it may be running now): checked before each request is sent — two pushes sending the
    same records at once is the harm — and inside each transaction recording what was sent
    (:func:`~personify.sources.schedule.holds`). Nothing to check on DuckDB."""
    if holds(wh, run_name(name)):
        return
    raise WarehouseError(
        f"destination {name!r}: the push lost its lock on PostgreSQL (the connection holding it "
        "dropped), so another push of it may be running; it stopped: nothing more was sent or "
        "recorded",
        hint=f"run `personify push {name}` again: what the API took but this push did not record "
        "goes again (an upsert or a removal twice changes nothing more)",
    )


def key_prefix(wh: Warehouse, name: str) -> str:
    """What a destination's key hashes start with (its name and the id key)."""
    return f"destination:{name}:{id_key_of(wh)}:"


def keyed(wh: Warehouse, name: str, keys: Sequence[str]) -> tuple[str, list[object]]:
    """SQL condition and parameters: the state rows of ``name`` whose key is one of ``keys``
    (they are not in the state: their keyed hashes are)."""
    prefix = key_prefix(wh, name)
    hashes = sorted({hashlib.md5((prefix + k).encode()).hexdigest() for k in keys})  # noqa: S324
    marks = ", ".join("?" for _ in hashes) or "NULL"
    return f"destination = ? AND key_hash IN ({marks})", [name, *hashes]


def pushed(wh: Warehouse, project: Project, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The records keyed by one of ``keys`` (a person's identifiers) that destinations took or
    refused: where their data went (an export lists them)."""
    out: list[dict[str, Any]] = []
    for d in rest_destinations(project):
        where, params = keyed(wh, d.name, keys)
        rows = wh.fetch(
            f"SELECT status, pushed_at, error FROM destination_state WHERE {where} "
            "ORDER BY pushed_at",
            params,
        )
        out += [
            {"destination": d.name, "status": s, "pushed_at": at, "error": e} for s, at, e in rows
        ]
    return out


def shared_clock(wh: Warehouse) -> datetime:
    """The real clock several processes compare: the warehouse server's on PostgreSQL
    (``clock_timestamp()``: a push's start and an erasure's :data:`~.erasures.LOOKED_FOR` rows
    may be taken on two hosts whose clocks differ — a skew of a second would hide an erasure
    from the push that raced it), this machine's on a single-process warehouse (one clock)."""
    if wh.capabilities.single_process:
        return clock.wall()
    found = wh.scalar("SELECT clock_timestamp()")
    if not isinstance(found, datetime):
        return clock.wall()
    return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)


def acks_lock(wh: Warehouse, name: str) -> None:
    """PostgreSQL: serialize, until the transaction ends, destination ``name``'s erasure step
    and a push recording what its API took (:meth:`Acks.flush`) — whichever commits second sees
    what the first wrote (the state row to mark, or the :data:`~.erasures.LOOKED_FOR` rows) —
    and a push reading its start (:func:`~.erasures.push_started`). DuckDB: one process, its
    transactions one after the other: nothing to do."""
    if wh.capabilities.advisory_lock:
        schema = str(wh.scalar("SELECT current_schema()"))
        wh.execute(f"SELECT pg_advisory_xact_lock({advisory_key(f'acks:{name}', schema)})", ())


def kept_key(d: RestDestination, kept: str) -> str:
    """The key inside what a destination keeps of a record: the key itself, or — an ad
    audience, which must name a person by their hashed identifiers to remove them — the key,
    a line break, and those identifiers (JSON)."""
    return kept.partition("\n")[0] if d.ad_audience else kept


def opened(
    wh: Warehouse, d: RestDestination, ring: KeyRing, rows: list[tuple[str, str, str]]
) -> list[tuple[str, str, str | None]]:
    """``rows`` with what was kept of each record decrypted (its key; for an ad audience more,
    :func:`kept_key`) — ``None`` for one that does not decrypt or whose key's keyed hash is not
    its row's (a token moved to another row names another record)."""
    prefix = key_prefix(wh, d.name)
    out: list[tuple[str, str, str | None]] = []
    for key_hash, row_hash, token in rows:
        try:
            kept: str | None = ring.decrypt(token, field=RECORD_KEY)
        except DecryptionError:
            kept = None
        if kept is not None:
            key = kept_key(d, kept)
            if hashlib.md5((prefix + key).encode()).hexdigest() != key_hash:  # noqa: S324
                kept = None
        out.append((key_hash, row_hash, kept))
    return out


class Acks:
    """What the API answered, recorded in ``destination_state`` by the thousand records or the
    second (one commit per batch cost more than the request: 40 ms against 5), and whatever is
    left when the push ends or stops. A crash loses at most that: those records go again (an
    upsert or a removal twice changes nothing more)."""

    EVERY_RECORDS: Final = 1_000
    EVERY_SECONDS: Final = 1.0

    def __init__(
        self,
        wh: Warehouse,
        d: RestDestination,
        ring: KeyRing | None,
        held: Held | None = None,
        *,
        since: datetime | None = None,
    ) -> None:
        self.wh, self.d, self.ring, self.held = wh, d, ring, held
        self.since = since or clock.wall()
        """When the push began reading its model (the real clock): an erasure of the person
        since then (:data:`~.erasures.LOOKED_FOR`) turns what the API took of them into its
        removal (:func:`~.erasures.settle`)."""
        self.rows: list[tuple[str, str, str, str | None, str | None]] = []
        self.kept: list[tuple[str, str]] = []
        """(key hash, what it keeps in plain text): an ad audience's identifiers, for
        ``held`` (:class:`~.shared.Held`) to hash."""
        self.removed: list[str] = []
        self.flushed = time.monotonic()

    def add(
        self,
        rows: list[dict[str, Any]],
        status: str,
        error: str | None = None,
        *,
        kept: Sequence[str] | None = None,
    ) -> None:
        """Model rows the API took (``sent``) or refused (``rejected``); with their key — or
        ``kept``, one per row (:func:`kept_key`) — encrypted when the destination removes
        records."""
        ring = self.ring
        for i, r in enumerate(rows):
            plain = str(r[self.d.key]) if kept is None else kept[i]
            token = None if ring is None else ring.encrypt(plain, field=RECORD_KEY)
            self.rows.append((str(r[KEY]), str(r[HASH]), status, error, token))
            if self.held is not None and kept is not None:
                self.kept.append((str(r[KEY]), plain))
        self._maybe_flush()

    def keep(
        self, rows: list[tuple[str, str, str]], error: str, *, status: str = "remove_rejected"
    ) -> None:
        """State rows (key hash, row hash, encrypted key) whose removal was refused (an
        erasure's stays :data:`ERASED`: tried again first next push)."""
        self.rows += [(h, r, status, error, k) for h, r, k in rows]
        self._maybe_flush()

    def remove(self, key_hashes: list[str]) -> None:
        """Records the API removed: their state goes (encrypted key included)."""
        self.removed += key_hashes
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if (
            len(self.rows) + len(self.removed) >= self.EVERY_RECORDS
            or time.monotonic() - self.flushed >= self.EVERY_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        from personify.destinations import erasures
        from personify.warehouse.schema import DESTINATION_STATE

        self.flushed = time.monotonic()
        if not self.rows and not self.removed:
            return
        with self.wh.transaction():
            still_pushing(self.wh, self.d.name)  # (PostgreSQL: its lock, lost with a connection?)
            acks_lock(self.wh, self.d.name)  # (an erasure step of this destination: one first)
            meanwhile: dict[str, tuple[str, bool]] = {}
            if erasures.erased_since(self.wh, self.d.name, self.since):  # (one read: rarely)
                self.rows, dropped, meanwhile = erasures.settle(
                    self.wh, self.d, self.since, self.rows
                )
                self.kept = [k for k in self.kept if k[0] not in dropped]
            if self.rows:
                keys, hashes, statuses, errors, tokens = zip(*self.rows, strict=True)
                n = len(keys)
                table = pa.table(
                    {
                        "destination": pa.array([self.d.name] * n),
                        "key_hash": pa.array(keys),
                        "row_hash": pa.array(hashes),
                        "status": pa.array(statuses),
                        "error": pa.array(errors, pa.string()),
                        "pushed_at": pa.array([clock.now()] * n, pa.timestamp("us", tz="UTC")),
                        "record_key": pa.array(tokens, pa.string()),
                    }
                )
                self.wh.load(DESTINATION_STATE, table, on_conflict="update")
            if meanwhile:
                erasures.link(self.wh, self.d.name, meanwhile)
            if self.held is not None:
                self.held.write(self.kept)
            if self.removed:
                for name in (IDENTIFIERS, "destination_state")[not self.d.ad_audience :]:
                    self.wh.execute(
                        f"DELETE FROM {name} WHERE destination = ? "
                        f"AND key_hash IN (SELECT {UNNEST})",
                        [self.d.name, self.removed],
                    )
        self.rows, self.kept, self.removed = [], [], []
