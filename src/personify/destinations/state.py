"""A destination's state (``destination_state``): each record's keyed hash, its row's hash
when the API last took it, its status — and, for a destination that removes records, its key
encrypted. What a person was pushed as (export) and forgetting them (erasure) read it here."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
removal can never be sent until that key is back (:func:`stranded_removals` counts them)."""


NO_IDENTIFIERS: Final = "no identifiers were kept for it"
"""Words of the error kept on an ad audience's record pushed before the destination was an
audience: its removal cannot name the person (:func:`stranded_removals` counts them)."""


@dataclass(frozen=True)
class Stranded:
    """Removals erasures left at a destination that no push will send as things stand."""

    destination: str
    records: int
    why: str
    todo: str
    error: str | None = None
    """The words of their kept error (``LIKE``), or ``None``: every removal the destination's
    erasures left (:func:`forget_stranded`)."""

    def message(self) -> str:
        """For people: the destination, the count, why and what to do (no personal data)."""
        return (
            f"destination {self.destination}: {self.records:,} erased people's record(s) left "
            f"to remove can never be removed — {self.why}; {self.todo}"
        )


def pending_of(wh: Warehouse, erasure_ids: Sequence[str]) -> dict[str, int]:
    """The removals the erasures ``erasure_ids`` queued that still wait for a push, per
    destination (:func:`erase_records`)."""
    if not erasure_ids:
        return {}
    rows = wh.fetch(
        f"SELECT destination, count(*) FROM destination_state WHERE status = '{ERASED}' "
        f"AND erasure_id IN (SELECT {UNNEST}) GROUP BY destination ORDER BY destination",
        [list(erasure_ids)],
    )
    return {str(d): int(n) for d, n in rows}


def stranded_removals(
    wh: Warehouse, project: Project, names: Sequence[str] | None = None
) -> list[Stranded]:
    """The removals erasures left (:data:`ERASED`) that a push cannot send (of ``names``, default
    every destination, those no longer in ``personify.yml`` included): the destination is gone
    from ``personify.yml``, no longer ``on_remove: delete``, or its kept keys do not decrypt."""
    configured = {d.name: d for d in rest_destinations(project)}
    out: list[Stranded] = []
    for name, total, lost, bare in wh.fetch(
        "SELECT destination, count(*), sum(CASE WHEN error LIKE ? THEN 1 ELSE 0 END), "
        "sum(CASE WHEN error LIKE ? THEN 1 ELSE 0 END) FROM destination_state "
        f"WHERE status = '{ERASED}' GROUP BY destination ORDER BY destination",
        [f"%{LOST_KEY}%", f"%{NO_IDENTIFIERS}%"],
    ):
        name, total, lost, bare = str(name), int(total), int(lost or 0), int(bare or 0)
        if names is not None and name not in names:
            continue
        d = configured.get(name)
        forget = f"or, once they are removed at the API by hand, `{FORGET} {name}`"
        if d is None:
            out.append(
                Stranded(
                    name,
                    total,
                    "the destination is no longer in personify.yml",
                    f"put it back (on_remove: delete) and run `personify push {name}`, {forget}",
                )
            )
            continue
        if d.on_remove != "delete":
            out.append(
                Stranded(
                    name,
                    total,
                    f"on_remove is {d.on_remove}: a push removes nothing",
                    f"set destinations.{name}.on_remove: delete again (with "
                    f"privacy.encryption_keys) and run `personify push {name}`, {forget}",
                )
            )
            continue
        if lost:
            out.append(
                Stranded(
                    name,
                    lost,
                    f"their kept keys do not decrypt: {LOST_KEY} they were encrypted under",
                    f"put that key back in privacy.encryption_keys and run `personify push "
                    f"{name}`, {forget}",
                    LOST_KEY,
                )
            )
        if bare and d.ad_audience:
            out.append(
                Stranded(
                    name,
                    bare,
                    "no identifiers were kept for them (pushed before the destination was an "
                    "ad audience): a removal cannot name them",
                    f"remove those people from the audience at the platform yourself, then "
                    f"`{FORGET} {name}`",
                    NO_IDENTIFIERS,
                )
            )
    return out


FORGET: Final = "personify push --forget-stranded"
"""The command settling stranded removals (:func:`forget_stranded`), a destination's name
after it."""


def forget_stranded(
    wh: Warehouse, project: Project, name: str
) -> tuple[int, list[Stranded], dict[str, int]]:
    """Drop destination ``name``'s stranded removals (:func:`stranded_removals`) — someone
    removed those people at the API by hand, or accepts they stay there; returns how many went,
    what they were, and how many of each erasure (its id; ``unlinked``: queued before migration
    40). Under the destination's lock (``exclusive``, held by the caller), in one transaction;
    the caller records it in the audit log."""
    stranded = stranded_removals(wh, project, [name])
    gone = 0
    erasures: dict[str, int] = {}
    with wh.transaction():
        still_pushing(wh, name)
        # (an erasure's step of this destination: one after the other — it locks the state row
        # then the identifiers, this the identifiers then the state rows)
        acks_lock(wh, name)
        for s in stranded:
            where = f"destination = ? AND status = '{ERASED}'"
            params: list[object] = [name]
            if s.error is not None:
                where += " AND error LIKE ?"
                params.append(f"%{s.error}%")
            for erasure, n in wh.fetch(
                f"SELECT erasure_id, count(*) FROM destination_state WHERE {where} "
                "GROUP BY erasure_id",
                params,
            ):
                linked = "unlinked" if erasure is None else str(erasure)
                erasures[linked] = erasures.get(linked, 0) + int(n)
            wh.execute(
                f"DELETE FROM {IDENTIFIERS} WHERE destination = ? AND key_hash IN "
                f"(SELECT key_hash FROM destination_state WHERE {where})",
                [name, *params],
            )
            gone += max(wh.execute(f"DELETE FROM destination_state WHERE {where}", params), 0)
    return gone, stranded, erasures


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


def _of(wh: Warehouse, name: str, keys: Sequence[str]) -> tuple[str, list[object]]:
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
        where, params = _of(wh, d.name, keys)
        rows = wh.fetch(
            f"SELECT status, pushed_at, error FROM destination_state WHERE {where} "
            "ORDER BY pushed_at",
            params,
        )
        out += [
            {"destination": d.name, "status": s, "pushed_at": at, "error": e} for s, at, e in rows
        ]
    return out


def forget(wh: Warehouse, name: str, keys: Sequence[str]) -> int:
    """Drop the state of the records of ``name`` keyed by one of ``keys`` (an erased person's
    identifiers) — but those left to remove (:func:`erase_records`); returns how many records
    that was. Their next appearance in the model is then pushed as new."""
    where, params = _of(wh, name, keys)
    wh.execute(f"DELETE FROM {IDENTIFIERS} WHERE {where}", params)
    return max(
        wh.execute(f"DELETE FROM destination_state WHERE {where} AND status <> '{ERASED}'", params),
        0,
    )


def erase_records(
    wh: Warehouse, name: str, keys: Sequence[str], *, erasure_id: str | None = None
) -> int:
    """The records of ``name`` keyed by one of ``keys`` whose key was kept become removals left
    to do (:data:`ERASED`): their row's hash, error and time dropped (an ad audience's
    identifiers' hashes too), nothing kept but the key's keyed hash and the encrypted key — and
    ``erasure_id``, the erasure they are for (one pending already keeps the erasure that queued
    it). Returns how many are pending (those marked before too)."""
    where, params = _of(wh, name, keys)
    wh.execute(f"DELETE FROM {IDENTIFIERS} WHERE {where}", params)
    wh.execute(
        f"UPDATE destination_state SET erasure_id = CASE WHEN status = '{ERASED}' AND "
        f"erasure_id IS NOT NULL THEN erasure_id ELSE ? END, status = '{ERASED}', "
        f"row_hash = '', error = NULL, pushed_at = ?, identifiers_key = NULL "
        f"WHERE {where} AND record_key IS NOT NULL",
        [erasure_id, clock.now(), *params],
    )
    return int(
        wh.scalar(
            f"SELECT count(*) FROM destination_state WHERE {where} AND status = '{ERASED}'",
            params,
        )
        or 0
    )


def shared_clock(wh: Warehouse) -> datetime:
    """The real clock several processes compare: the warehouse server's on PostgreSQL
    (``clock_timestamp()``: a push's start and an erasure's :data:`LOOKED_FOR` rows may be taken
    on two hosts whose clocks differ — a skew of a second would hide an erasure from the push
    that raced it), this machine's on a single-process warehouse (one clock)."""
    if wh.capabilities.single_process:
        return clock.wall()
    found = wh.scalar("SELECT clock_timestamp()")
    if not isinstance(found, datetime):
        return clock.wall()
    return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)


LOOKED_FOR: Final = "destination_key"
"""The ``erasure_progress`` rows (``step = 'destination_key'``) an erasure leaves per record
key hash it looked for at a destination (``erasure_id``: that hash, no one's identifier;
``erasure_of``: the erasure; ``finished_at``: :func:`shared_clock`): a push that read the person
before the erasure and records what the API took after it — their first push, no state for
the erasure to find — records them as that erasure's pending removal, not ``sent``
(:meth:`Acks.flush`)."""


def looked_for(
    wh: Warehouse, name: str, keys: Sequence[str], erasure_id: str, *, at: datetime | None = None
) -> None:
    """Leave the :data:`LOOKED_FOR` rows of the erasure ``erasure_id`` of the person whose
    identifiers are ``keys`` at destination ``name`` — after :func:`acks_lock`, in the
    transaction of the erasure's destination step."""
    from personify.warehouse.schema import ERASURE_PROGRESS

    prefix = key_prefix(wh, name)
    hashes = sorted({hashlib.md5((prefix + k).encode()).hexdigest() for k in keys})  # noqa: S324
    if not hashes:
        return
    n = len(hashes)
    wh.load(
        ERASURE_PROGRESS,
        pa.table(
            {
                "erasure_id": hashes,
                "step": [LOOKED_FOR] * n,
                "status": ["done"] * n,
                "rows": pa.array([0] * n, pa.int64()),
                "finished_at": pa.array([at or shared_clock(wh)] * n, pa.timestamp("us", tz="UTC")),
                "erasure_of": [erasure_id] * n,
            }
        ),
        on_conflict="update",
        update_columns=["erasure_of", "finished_at"],
    )


def acks_lock(wh: Warehouse, name: str) -> None:
    """PostgreSQL: serialize, until the transaction ends, destination ``name``'s erasure step
    and a push recording what its API took (:meth:`Acks.flush`) — whichever commits second sees
    what the first wrote (the state row to mark, or the :data:`LOOKED_FOR` rows). DuckDB: one
    process, its transactions one after the other: nothing to do."""
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
        since then (:data:`LOOKED_FOR`) turns what the API took of them into its removal."""
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
        import pyarrow as pa

        from personify.warehouse.schema import DESTINATION_STATE

        self.flushed = time.monotonic()
        if not self.rows and not self.removed:
            return
        with self.wh.transaction():
            still_pushing(self.wh, self.d.name)  # (PostgreSQL: its lock, lost with a connection?)
            acks_lock(self.wh, self.d.name)  # (an erasure step of this destination: one first)
            erased = self._erased_since()
            if erased:  # (an erasure marked them while they were sent: its removal stays)
                self.rows = [r for r in self.rows if r[2] == ERASED or r[0] not in erased]
                self.kept = [k for k in self.kept if k[0] not in erased]
            meanwhile = self._erased_meanwhile()
            if meanwhile:  # (erased after the push read them, with no state to mark: theirs)
                self.rows = [
                    (r[0], "", ERASED, None, r[4]) if r[0] in meanwhile else r
                    for r in self.rows
                    if r[0] not in meanwhile or (r[2] == "sent" and r[4] is not None)
                ]
                self.kept = [k for k in self.kept if k[0] not in meanwhile]
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
                self._link(meanwhile)
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

    def _erased_meanwhile(self) -> dict[str, str]:
        """The keys among the records to record as sent or refused (not an erasure's own
        removal) that an erasure looked for since the push began (:data:`LOOKED_FOR`), and the
        erasure: it found no state for them (their first push, under way), so it queued no
        removal — the API's ``sent`` becomes that removal; a refused one, or one at a
        destination that removes nothing, is not recorded (the erasure forgets records)."""
        keys = [r[0] for r in self.rows if r[2] != ERASED]
        if not keys:
            return {}
        return {
            str(h): str(e)
            for h, e in self.wh.fetch(
                "SELECT erasure_id, erasure_of FROM erasure_progress WHERE step = ? "
                f"AND finished_at >= ? AND erasure_id IN (SELECT {UNNEST})",
                [LOOKED_FOR, self.since, keys],
            )
            if e is not None
        }

    def _link(self, meanwhile: dict[str, str]) -> None:
        """The records :meth:`_erased_meanwhile` found: those now pending removal linked to
        their erasure (its report, asked again, counts them); the erasure's step counts each
        (its report names the destination: a removal pending, or one to do by hand)."""
        from personify.privacy.erase import PENDING

        by: dict[str, list[str]] = {}
        for h, e in meanwhile.items():
            by.setdefault(e, []).append(h)
        name = self.d.name
        for erasure, hashes in sorted(by.items()):
            self.wh.execute(
                "UPDATE destination_state SET erasure_id = ?, identifiers_key = NULL "
                f"WHERE destination = ? AND status = '{ERASED}' AND key_hash IN (SELECT {UNNEST})",
                [erasure, name, hashes],
            )
            self.wh.execute(
                f"DELETE FROM {IDENTIFIERS} WHERE destination = ? AND key_hash IN "
                f"(SELECT {UNNEST})",
                [name, hashes],
            )
            pending = int(
                self.wh.scalar(
                    "SELECT count(*) FROM destination_state WHERE destination = ? AND "
                    f"status = '{ERASED}' AND erasure_id = ? AND key_hash IN (SELECT {UNNEST})",
                    [name, erasure, hashes],
                )
                or 0
            )
            self.wh.execute(
                "UPDATE erasure_progress SET rows = rows + CASE WHEN step = ? THEN ? ELSE ? END "
                "WHERE erasure_id = ? AND step IN (?, ?)",
                [f"destination:{name}", len(hashes), pending, erasure]
                + [f"destination:{name}", f"destination:{name}{PENDING}"],
            )
            # (counts and the erasure's hash only: no one's identifiers)
            log.warning(
                "destination %s: %d record(s) sent while erasure %s ran recorded as erased "
                "(%d pending removal)",
                name,
                len(hashes),
                erasure,
                pending,
            )

    def _erased_since(self) -> set[str]:
        """The keys among the records to record as sent or refused (not an erasure's own
        removal) that an erasure marked :data:`ERASED` since the push read them — written over,
        the erasure's pending removal was lost (the record left at the API as ``sent``, or
        removed later only as one leaving the model, under ``max_removals``). On PostgreSQL the
        rows are locked until the commit, so an erasure marking one now waits for it, then
        wins."""
        keys = [r[0] for r in self.rows if r[2] != ERASED]
        if not keys:
            return set()
        # (every row read, locked: one an erasure is marking is waited for, then read as it is)
        lock = "" if self.wh.capabilities.single_process else " FOR UPDATE"
        return {
            str(h)
            for h, status in self.wh.fetch(
                "SELECT key_hash, status FROM destination_state WHERE destination = ? "
                f"AND key_hash IN (SELECT {UNNEST}){lock}",
                [self.d.name, keys],
            )
            if status == ERASED
        }
