"""Identifiers an ad audience's records share, decided in the warehouse.

An ad platform removes whoever a removal's identifiers match, so a removal must leave out every
identifier a record staying in the audience holds (a household's phone, a shared inbox). Each
record's identifiers, as sent (normalized and SHA-256 hashed: :mod:`.audiences`), are kept in
``destination_identifiers`` as keyed hashes — HMAC-SHA256 of the destination, the platform's
key and the value, under the project's blind index key (``privacy.blind_index_key``, else
derived from ``signing_key``; a project with neither: derived from the active key of
``privacy.encryption_keys``) — never the value, which the warehouse could test a guessed
address against. The identifiers a leaving person shares are then one join: their hashes
against those of the records still in the model.

``destination_state.identifiers_key`` tags the key a record's hashes were made under. A record
kept before (migration 36), or under another key (rotated), is hashed from its encrypted state
the first time a push removes anyone — once; one whose state does not decrypt holds nothing
known (as before) and is tried again next time. Written with the record's state (the same
transaction), dropped with it: a removal, an erasure (:func:`~.erasures.erase_records`,
:func:`~.erasures.forget`). A dry run writes none of it: the hashes it needs go to a temporary
table (:data:`SCRATCH`), dropped when it is done.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Final

from personify.config import RestDestination
from personify.destinations.audiences import Sets, sets_of
from personify.destinations.model import READ, ROWS, leaving, staying
from personify.destinations.state import ERASED, IDENTIFIERS, KEY, opened, still_pushing
from personify.privacy.crypto import KeyRing
from personify.warehouse.base import UNNEST, Warehouse

TABLE: Final = IDENTIFIERS
SCRATCH: Final = "_push_identifiers"
"""A dry run's hashes of the records whose hashes are not kept yet (a temporary table)."""
Pair = tuple[str, str]
"""One identifier as sent: the platform's key and its (hashed) value."""
Units = Callable[[Sets], set[Pair]]
"""What of a record's identifier rows a platform matches people on, one by one."""


def hash_key(wh: Warehouse, ring: KeyRing) -> bytes:
    """The key of the identifiers' hashes: the project's blind index key when it has one, else
    one derived from the active encryption key (a new active key: hashed anew, once)."""
    from personify.privacy.fields import index_key, project_of

    project = project_of(wh)
    if project is not None and (
        project.config.privacy.blind_index_key or project.config.signing_key
    ):
        return index_key(project)
    kid, key = ring.keys[0]
    return hmac.new(key, f"personify destination identifiers v1\0{kid}".encode(), "sha256").digest()


class Held:
    """The identifiers of one destination's records, as keyed hashes in the warehouse."""

    def __init__(
        self,
        wh: Warehouse,
        d: RestDestination,
        ring: KeyRing,
        units: Units,
        *,
        dry_run: bool = False,
    ) -> None:
        self.wh, self.d, self.ring, self.units, self.dry_run = wh, d, ring, units, dry_run
        self.key = hash_key(wh, ring)
        self.tag = hmac.new(self.key, b"destination identifiers", hashlib.sha256).hexdigest()[:16]
        self._filled = False
        self._keyed = hmac.new(self.key, f"{d.name}\0".encode(), hashlib.sha256)

    def hashed(self, pairs: Iterable[Pair]) -> dict[str, Pair]:
        """Each identifier's keyed hash → the identifier."""
        out: dict[str, Pair] = {}
        for k, v in pairs:
            h = self._keyed.copy()  # (the key's pads and the prefix, hashed once)
            h.update(f"{k}\0{v}".encode())
            out[h.hexdigest()] = (k, v)
        return out

    def write(self, kept: list[tuple[str, str]]) -> None:
        """Record the identifiers of records (key hash, what each keeps in plain text:
        :func:`~.audiences.to_keep`) whose state was just written — in the caller's
        transaction; the state rows are tagged."""
        import pyarrow as pa

        from personify.warehouse.schema import DESTINATION_IDENTIFIERS

        if not kept:
            return
        keys = list(dict.fromkeys(h for h, _ in kept))
        rows = {(h, i) for h, plain in kept for i in self.hashed(self.units(sets_of(plain)))}
        self.wh.execute(
            f"DELETE FROM {TABLE} WHERE destination = ? AND key_hash IN (SELECT {UNNEST})",
            [self.d.name, keys],
        )
        if rows:
            ordered = sorted(rows)
            self.wh.load(
                DESTINATION_IDENTIFIERS,
                pa.table(
                    {
                        "destination": pa.array([self.d.name] * len(ordered), pa.string()),
                        "key_hash": pa.array([h for h, _ in ordered], pa.string()),
                        "id_hash": pa.array([i for _, i in ordered], pa.string()),
                    }
                ),
            )
        self.wh.execute(
            "UPDATE destination_state SET identifiers_key = ? WHERE destination = ? "
            f"AND key_hash IN (SELECT {UNNEST})",
            [self.tag, self.d.name, keys],
        )

    def backfill(self) -> int:
        """Hash the identifiers of the records staying in the model whose hashes are missing
        or made under another key, from their encrypted state (once); how many were. A dry
        run keeps them in :data:`SCRATCH` instead (the warehouse's state untouched)."""
        if self.dry_run:
            from personify.warehouse.scratch import scratch, temp_table

            temp_table(self.wh, scratch(SCRATCH, id_hash="VARCHAR"))
        done, after = 0, ""
        while page := staying(self.wh, self.d, limit=READ, after=after, untagged=self.tag):
            after = page[-1][0]
            kept = [(h, k) for h, _, k in opened(self.wh, self.d, self.ring, page) if k]
            if self.dry_run:
                self._scratch(kept)
            else:
                with self.wh.transaction():
                    still_pushing(self.wh, self.d.name)
                    self.write(kept)
            done += len(kept)
        return done

    def _scratch(self, kept: list[tuple[str, str]]) -> None:
        """A dry run's :meth:`write`: the identifiers' hashes only, in :data:`SCRATCH`."""
        import pyarrow as pa

        from personify.warehouse.scratch import scratch

        ids = sorted({i for _, plain in kept for i in self.hashed(self.units(sets_of(plain)))})
        if ids:
            table = scratch(SCRATCH, id_hash="VARCHAR")
            self.wh.load(table, pa.table({"id_hash": pa.array(ids, pa.string())}))

    def close(self) -> None:
        """Drop a dry run's :data:`SCRATCH` (a no-op otherwise)."""
        if self.dry_run:  # (whether or not its backfill got through)
            from personify.warehouse.scratch import drop

            drop(self.wh, SCRATCH)

    def shared(self, pairs: set[Pair]) -> set[Pair]:
        """Those of ``pairs`` that a record staying in the audience holds — still in the model
        (staged), by any identifier row it was sent with."""
        if not pairs:
            return set()
        if not self._filled:
            self.backfill()
            self._filled = True
        wanted = self.hashed(pairs)
        rows = self.wh.fetch(
            f"SELECT DISTINCT i.id_hash FROM {TABLE} i JOIN destination_state s "
            "ON s.destination = i.destination AND s.key_hash = i.key_hash "
            f"WHERE i.destination = ? AND i.id_hash IN (SELECT {UNNEST}) "
            f"AND s.identifiers_key = ? AND s.record_key IS NOT NULL AND s.status <> '{ERASED}' "
            f"AND EXISTS (SELECT 1 FROM {ROWS} r WHERE r.{KEY} = s.key_hash)",
            [self.d.name, sorted(wanted), self.tag],
        )
        if self.dry_run:  # (the records not hashed yet: hashed into the scratch table)
            rows += self.wh.fetch(
                f"SELECT DISTINCT id_hash FROM {SCRATCH} WHERE id_hash IN (SELECT {UNNEST})",
                [sorted(wanted)],
            )
        return {wanted[str(h)] for (h,) in rows}


def unsent_removals(
    wh: Warehouse,
    d: RestDestination,
    ring: KeyRing,
    units: Units,
    without: Callable[[Sets, set[Pair]], Sets],
) -> int:
    """``--dry-run``: how many of the records to remove (those that left the model and those
    erasures left) a push would not send, every identifier they hold being held by a record
    staying in the audience too — as the state stands (people this push would add first are not
    counted). Records kept before migration 36 are hashed as a push would
    (:meth:`Held.backfill`), into a temporary table: a dry run writes nothing."""
    held = Held(wh, d, ring, units, dry_run=True)
    unsent = 0
    try:
        for erased in (True, False):
            after = ""
            while page := leaving(wh, d, limit=READ, after=after, erased=erased):
                after = page[-1][0]
                named = [sets_of(k) for _, _, k in opened(wh, d, ring, page) if k is not None]
                named = [sets for sets in named if sets]
                shared = held.shared({u for sets in named for u in units(sets)})
                unsent += sum(1 for sets in named if not without(sets, shared))
    finally:
        held.close()
    return unsent
