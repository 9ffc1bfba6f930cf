"""Erasures at destinations (reverse ETL): what an erasure leaves in ``destination_state`` —
the person's records become pending removals (:data:`~.state.ERASED`) or are forgotten, and
the keys it looked for are left (:data:`LOOKED_FOR`) for a push racing it — and what a push
does about them: the removals it can never send (:func:`stranded_removals`), settled by hand
(:func:`forget_stranded`), and, when it records what its API took (:class:`~.state.Acks`),
the records an erasure reached meanwhile (:func:`settle`).

The order that makes a push and an erasure safe together: an erasure's destination step and
a push's recording take the destination's transaction lock (:func:`~.state.acks_lock`) — one
after the other; a push takes it too while it reads its start (:func:`push_started`), so an
erasure stamped before that start has committed, and one not committed is stamped after it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import pyarrow as pa

from personify import clock
from personify.config import Project, RestDestination
from personify.destinations.state import (
    ERASED,
    IDENTIFIERS,
    LOST_KEY,
    MERGED,
    NO_IDENTIFIERS,
    acks_lock,
    key_prefix,
    keyed,
    rest_destinations,
    run_name,
    shared_clock,
    still_pushing,
)
from personify.sources.schedule import exclusive
from personify.warehouse.base import UNNEST, Warehouse

log = logging.getLogger(__name__)

Row = tuple[str, str, str, str | None, str | None]
"""A record to record (:class:`~.state.Acks`): key hash, row hash, status, error, kept key."""


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
    from ``personify.yml``, no longer ``on_remove: delete``, its kept keys do not decrypt, an ad
    audience kept no identifiers, or HubSpot merged the contact with another."""
    configured = {d.name: d for d in rest_destinations(project)}
    out: list[Stranded] = []
    for name, total, lost, bare, merged in wh.fetch(
        "SELECT destination, count(*), sum(CASE WHEN error LIKE ? THEN 1 ELSE 0 END), "
        "sum(CASE WHEN error LIKE ? THEN 1 ELSE 0 END), "
        "sum(CASE WHEN error LIKE ? THEN 1 ELSE 0 END) FROM destination_state "
        f"WHERE status = '{ERASED}' GROUP BY destination ORDER BY destination",
        [f"%{LOST_KEY}%", f"%{NO_IDENTIFIERS}%", f"%{MERGED}%"],
    ):
        name, total, lost, bare = str(name), int(total), int(lost or 0), int(bare or 0)
        merged = int(merged or 0)
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
        if merged:
            out.append(
                Stranded(
                    name,
                    merged,
                    "HubSpot merged their contact with another (it holds other email addresses "
                    "too): archiving it would archive the other person's record with it",
                    "remove the erased person's contact, or their address on it, at HubSpot "
                    f"yourself, then `{FORGET} {name}`",
                    MERGED,
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


def forget(wh: Warehouse, name: str, keys: Sequence[str]) -> int:
    """Drop the state of the records of ``name`` keyed by one of ``keys`` (an erased person's
    identifiers) — but those left to remove (:func:`erase_records`); returns how many records
    that was. Their next appearance in the model is then pushed as new."""
    where, params = keyed(wh, name, keys)
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
    where, params = keyed(wh, name, keys)
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


LOOKED_FOR: Final = "destination_key"
"""The ``erasure_progress`` rows (``step = 'destination_key:NAME'``, :func:`looked_for_step`)
an erasure leaves per record key hash it looked for at destination NAME (``erasure_id``: that
hash, no one's identifier; ``erasure_of``: the erasure; ``finished_at``: :func:`shared_clock`;
``rows``: 1 when the erasure counted that record as one to remove by hand — its state
forgotten): a push that read the person before the erasure and records what the API took after
it — their first push, no state for the erasure to find — records them as that erasure's
pending removal, not ``sent`` (:func:`settle`). The next push of NAME drops them
(:func:`push_started`): no push of it that began before them is still running; a push of the
others when NAME is no longer configured, too (:func:`prune_unconfigured`)."""


def looked_for_step(name: str) -> str:
    """The ``erasure_progress`` step of the :data:`LOOKED_FOR` rows of destination ``name``."""
    return f"{LOOKED_FOR}:{name}"


def looked_for(
    wh: Warehouse, name: str, keys: Sequence[str], erasure_id: str, *, at: datetime | None = None
) -> None:
    """Leave the :data:`LOOKED_FOR` rows of the erasure ``erasure_id`` of the person whose
    identifiers are ``keys`` at destination ``name`` — after :func:`acks_lock`, in the
    transaction of the erasure's destination step, after :func:`erase_records` and before
    :func:`forget`: the records :func:`forget` will drop (counted as ones to remove by hand)
    are marked (``rows`` 1), so a push turning one into a pending removal does not count it
    twice (:func:`_link`)."""
    from personify.warehouse.schema import ERASURE_PROGRESS

    prefix = key_prefix(wh, name)
    hashes = sorted({hashlib.md5((prefix + k).encode()).hexdigest() for k in keys})  # noqa: S324
    if not hashes:
        return
    n = len(hashes)
    counted = {
        str(h)
        for (h,) in wh.fetch(
            "SELECT key_hash FROM destination_state WHERE destination = ? AND "
            f"status <> '{ERASED}' AND key_hash IN (SELECT {UNNEST})",
            [name, hashes],
        )
    }
    wh.load(
        ERASURE_PROGRESS,
        pa.table(
            {
                "erasure_id": hashes,
                "step": [looked_for_step(name)] * n,
                "status": ["done"] * n,
                "rows": pa.array([int(h in counted) for h in hashes], pa.int64()),
                "finished_at": pa.array([at or shared_clock(wh)] * n, pa.timestamp("us", tz="UTC")),
                "erasure_of": [erasure_id] * n,
            }
        ),
        on_conflict="update",
        update_columns=["erasure_of", "finished_at", "rows"],
    )


def push_started(wh: Warehouse, name: str, *, prune: bool = True) -> datetime:
    """The start of a push of destination ``name`` (:func:`shared_clock`), read under its
    transaction lock (:func:`acks_lock`): an erasure's step stamped before it has committed
    (the push reads the state it marked, and the model without the person), one not committed
    yet is stamped after it (its :data:`LOOKED_FOR` rows reach this push). Under the push's lock
    (no other push of ``name`` runs), ``prune`` drops the :data:`LOOKED_FOR` rows stamped
    before it: no push of ``name`` will read them (a dry run keeps them: it writes nothing)."""
    with wh.transaction():
        acks_lock(wh, name)
        since = shared_clock(wh)
        if prune:
            wh.execute(
                "DELETE FROM erasure_progress WHERE step = ? AND finished_at < ?",
                [looked_for_step(name), since],
            )
    return since


def prune_unconfigured(wh: Warehouse, configured: Collection[str]) -> list[str]:
    """Drop the :data:`LOOKED_FOR` rows of the destinations not in ``configured`` (taken out of
    personify.yml: no push of theirs will drop them) as their next push would
    (:func:`push_started`, under each one's lock); returns their names. One put back is pushed
    as any: what an erasure leaves for it from then on reaches its push. One whose push runs
    (another process's personify.yml still has it: a serve not restarted yet) is left to that
    push, which reads the rows stamped since it began and drops those before it — dropped
    here, an erasure during that push would not reach it."""
    prefix = f"{LOOKED_FOR}:"
    steps = wh.fetch(
        f"SELECT DISTINCT step FROM erasure_progress WHERE substr(step, 1, {len(prefix)}) = ?",
        [prefix],
    )
    dropped = []
    for name in sorted({str(s).removeprefix(prefix) for (s,) in steps} - set(configured)):
        with exclusive(run_name(name), wait=False, warehouse=wh) as free:
            if free:  # (no push of it runs, here or in another process)
                push_started(wh, name)
                dropped.append(name)
    return dropped


def erased_since(wh: Warehouse, name: str, since: datetime) -> bool:
    """Whether an erasure's step of destination ``name`` committed since the push that began at
    ``since`` (:func:`push_started`) — every one leaves :data:`LOOKED_FOR` rows — called under
    :func:`acks_lock`: if not, no record the push is recording was reached by one (one read,
    instead of :func:`settle`'s two per batch)."""
    return (
        wh.scalar(
            "SELECT 1 FROM erasure_progress WHERE step = ? AND finished_at >= ? LIMIT 1",
            [looked_for_step(name), since],
        )
        is not None
    )


def settle(
    wh: Warehouse, d: RestDestination, since: datetime, rows: list[Row]
) -> tuple[list[Row], set[str], dict[str, tuple[str, bool]]]:
    """What a push records of ``rows`` when erasures reached some of them since it began at
    ``since`` — under :func:`acks_lock`, in the recording's transaction: those an erasure marked
    :data:`ERASED` are dropped (its pending removal stays), those it looked for and found no
    state of (their first push) become its pending removal (a refused one, or one kept without
    its key, is dropped: the erasure forgets records). Returns the rows to record, the key
    hashes dropped or turned (their identifiers are not to be kept), and those turned (their
    erasure, and whether it counted them already: :func:`link`)."""
    marked = _marked(wh, d.name, rows)
    if marked:  # (an erasure marked them while they were sent: its removal stays)
        rows = [r for r in rows if r[2] == ERASED or r[0] not in marked]
    meanwhile = _looked_for_since(wh, d.name, since, rows)
    if meanwhile:  # (erased after the push read them, with no state to mark: theirs)
        rows = [
            (r[0], "", ERASED, None, r[4]) if r[0] in meanwhile else r
            for r in rows
            if r[0] not in meanwhile or (r[2] == "sent" and r[4] is not None)
        ]
    return rows, marked | set(meanwhile), meanwhile


def _looked_for_since(
    wh: Warehouse, name: str, since: datetime, rows: list[Row]
) -> dict[str, tuple[str, bool]]:
    """The keys among ``rows`` to record as sent or refused (not an erasure's own removal) that
    an erasure looked for since the push began (:data:`LOOKED_FOR`), with the erasure and
    whether it counted the record already (as one to remove by hand): it found no state for
    them (their first push, under way), so it queued no removal — the API's ``sent`` becomes
    that removal."""
    keys = [r[0] for r in rows if r[2] != ERASED]
    if not keys:
        return {}
    return {
        str(h): (str(e), bool(n))
        for h, e, n in wh.fetch(
            "SELECT erasure_id, erasure_of, rows FROM erasure_progress WHERE step = ? "
            f"AND finished_at >= ? AND erasure_id IN (SELECT {UNNEST})",
            [looked_for_step(name), since, keys],
        )
        if e is not None
    }


def _marked(wh: Warehouse, name: str, rows: list[Row]) -> set[str]:
    """The keys among ``rows`` to record as sent or refused (not an erasure's own removal) that
    an erasure marked :data:`ERASED` since the push read them — written over, the erasure's
    pending removal was lost (the record left at the API as ``sent``, or removed later only as
    one leaving the model, under ``max_removals``). The erasure's step is not under way: it
    holds :func:`acks_lock` as the caller does."""
    keys = [r[0] for r in rows if r[2] != ERASED]
    if not keys:
        return set()
    return {
        str(h)
        for (h,) in wh.fetch(
            "SELECT key_hash FROM destination_state WHERE destination = ? "
            f"AND status = '{ERASED}' AND key_hash IN (SELECT {UNNEST})",
            [name, keys],
        )
    }


def link(wh: Warehouse, name: str, meanwhile: dict[str, tuple[str, bool]]) -> None:
    """The records :func:`settle` turned: those now pending removal linked to their erasure (its
    report, asked again, counts them); the erasure's step counts each — once: one it counted
    already (its state forgotten, to remove by hand) is now among its pending removals instead
    (its report names the destination: a removal pending, or one to do by hand)."""
    from personify.privacy.erase import PENDING

    by: dict[str, list[tuple[str, bool]]] = {}
    for h, (e, counted) in meanwhile.items():
        by.setdefault(e, []).append((h, counted))
    step = f"destination:{name}"
    for erasure, found in sorted(by.items()):
        hashes = [h for h, _ in found]
        new = sum(1 for _, counted in found if not counted)
        wh.execute(
            "UPDATE destination_state SET erasure_id = ?, identifiers_key = NULL "
            f"WHERE destination = ? AND status = '{ERASED}' AND key_hash IN (SELECT {UNNEST})",
            [erasure, name, hashes],
        )
        wh.execute(
            f"DELETE FROM {IDENTIFIERS} WHERE destination = ? AND key_hash IN (SELECT {UNNEST})",
            [name, hashes],
        )
        pending = int(
            wh.scalar(
                "SELECT count(*) FROM destination_state WHERE destination = ? AND "
                f"status = '{ERASED}' AND erasure_id = ? AND key_hash IN (SELECT {UNNEST})",
                [name, erasure, hashes],
            )
            or 0
        )
        wh.execute(
            "UPDATE erasure_progress SET rows = rows + CASE WHEN step = ? THEN ? ELSE ? END "
            "WHERE erasure_id = ? AND step IN (?, ?)",
            [step, new, pending, erasure, step, f"{step}{PENDING}"],
        )
        wh.execute(  # (counted now: a later recording of them adds nothing)
            "UPDATE erasure_progress SET rows = 1 WHERE step = ? AND erasure_id IN "
            f"(SELECT {UNNEST})",
            [looked_for_step(name), hashes],
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
