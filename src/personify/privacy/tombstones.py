"""Suppression tombstones and whoever holds their address now.

An email or phone suppression (an erasure, an unsubscribe, a bounce) holds only a keyed hash of
the address (:mod:`.hashing`). When re-ingested data brings the address back under a customer,
the tombstone must stop that customer too, whichever path re-created them:

* :func:`relink_tombstones` — the batch privacy stage: every identity node (incrementally), the
  tombstone pointed at the customer now holding its address;
* :func:`relink_new_nodes` — the real-time pass (:func:`personify.profiles.realtime.apply`):
  only the email and phone nodes that pass added (an erased person comes back as new nodes,
  their graph having been erased), so a pass pays nothing when nobody new appears;
* :func:`tombstoned` / :func:`held_tombstones` — read-only, at the send gate: the customers
  holding an address a tombstone was kept for, linked or not, so the gate fails closed even
  when no relinking ran (a ``personify sync`` without ``run``, a crash between the identity
  pass and the relink).

Pointing the tombstone at the customer is what the consent gate
(:func:`~personify.privacy.consent.consented`) and the ``sendable`` view read: such a customer is
not marketable until they opt in again after the tombstone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from personify.identity import state
from personify.privacy.hashing import HASHED_KINDS, hash_normalized
from personify.warehouse.base import UNNEST, Warehouse

_MARK = "privacy.tombstones"
"""identity_state key: ``<tombstone count>:<newest tombstone>:<highest node id checked>``."""
_KINDS = ", ".join("?" for _ in HASHED_KINDS)
_NODES = (
    "SELECT kind, value, customer_id FROM identity_nodes "
    f"WHERE kind IN ({_KINDS}) AND customer_id IS NOT NULL AND NOT blocked"
)


def top_node(wh: Warehouse) -> int:
    """The highest identity node id (nodes added later have higher ids)."""
    return int(wh.scalar("SELECT coalesce(max(node_id), 0) FROM identity_nodes") or 0)


def _any_tombstone(wh: Warehouse) -> bool:
    return bool(
        wh.fetch(f"SELECT 1 FROM suppressions WHERE kind IN ({_KINDS}) LIMIT 1", list(HASHED_KINDS))
    )


def _hashed(key: bytes, nodes: Iterable[Sequence[Any]]) -> dict[tuple[str, str], str]:
    """``(kind, tombstone hash) → customer id`` of identity nodes ``(kind, value, customer)``."""
    return {(str(k), hash_normalized(key, str(k), str(v))): str(c) for k, v, c in nodes}


def _point(wh: Warehouse, kind: str, subject_hash: str, customer_id: str) -> None:
    wh.execute(
        "UPDATE suppressions SET customer_id = ? WHERE kind = ? AND subject_hash = ?",
        [customer_id, kind, subject_hash],
    )


def _matching(
    wh: Warehouse, held: dict[tuple[str, str], str]
) -> list[tuple[str, str, Any, str, Any]]:
    """The tombstones ``(kind, hash, customer id, reason, created_at)`` among ``held``'s hashes
    (by key)."""
    if not held:
        return []
    rows = wh.fetch(
        "SELECT kind, subject_hash, customer_id, reason, created_at FROM suppressions "
        f"WHERE subject_hash IN (SELECT {UNNEST})",
        [sorted({h for _, h in held})],
    )
    return [
        (str(k), str(h), c, str(reason), created)
        for k, h, c, reason, created in rows
        if (str(k), str(h)) in held
    ]


def relink_tombstones(wh: Warehouse, key: bytes) -> int:
    """Point every email/phone suppression at the customer now holding its address (a tombstone
    whose address nobody holds keeps its customer). Returns the number re-linked.

    Incremental: while the set of tombstones is unchanged, only identity nodes added since the
    last pass are hashed (a new customer is a new node); new tombstones, or node ids starting
    over (a rebuilt graph), mean one full pass."""
    tombs = {
        (str(k), str(h)): c
        for k, h, c in wh.fetch(
            f"SELECT kind, subject_hash, customer_id FROM suppressions WHERE kind IN ({_KINDS})",
            list(HASHED_KINDS),
        )
    }
    if not tombs:
        return 0
    newest = wh.scalar(
        f"SELECT max(created_at) FROM suppressions WHERE kind IN ({_KINDS})", list(HASHED_KINDS)
    )
    top = top_node(wh)
    signature = f"{len(tombs)}:{newest}"
    stored_sig, _, stored_top = (state.get(wh, _MARK) or "").rpartition(":")
    after = int(stored_top) if stored_sig == signature and stored_top.isdigit() else 0
    if after > top:
        after = 0
    moved = 0
    nodes = wh.fetch(f"{_NODES} AND node_id > ?", [*HASHED_KINDS, after])
    for pair, customer_id in _hashed(key, nodes).items():
        if pair in tombs and tombs[pair] != customer_id:
            _point(wh, *pair, customer_id)
            tombs[pair] = customer_id
            moved += 1
    state.put(wh, _MARK, f"{signature}:{top}")
    return moved


def relink_new_nodes(wh: Warehouse, key: bytes, after: int) -> int:
    """Point the tombstones of the email/phone nodes added after node id ``after`` (what one
    real-time pass added, :func:`top_node` read before it) at their customers; returns how many
    moved. Two statements when nodes were added (none otherwise), hashing only those nodes."""
    held = _hashed(key, wh.fetch(f"{_NODES} AND node_id > ?", [*HASHED_KINDS, after]))
    moved = 0
    for kind, subject_hash, customer_id, _, _ in _matching(wh, held):
        holder = held[(kind, subject_hash)]
        if customer_id != holder:
            _point(wh, kind, subject_hash, holder)
            moved += 1
    return moved


def tombstoned(wh: Warehouse, key: bytes, customer_ids: Sequence[str]) -> set[str]:
    """The customers among ``customer_ids`` holding an email or phone an email/phone suppression
    was kept for, whether or not the tombstone points at them yet (read-only; nothing is
    hashed when no such suppression exists)."""
    return {holder for holder, _, _ in held_tombstones(wh, key, customer_ids)}


def held_tombstones(
    wh: Warehouse, key: bytes, customer_ids: Sequence[str]
) -> list[tuple[str, str, Any]]:
    """:func:`tombstoned` with each tombstone's ``(holder, reason, created_at)`` — what the send
    gate needs to let an erasure give way to consent granted after it."""
    ids = sorted({str(c) for c in customer_ids if c})
    if not ids or not _any_tombstone(wh):
        return []
    held = _hashed(
        key,
        wh.fetch(f"{_NODES} AND customer_id IN (SELECT {UNNEST})", [*HASHED_KINDS, ids]),
    )
    return [
        (held[(kind, subject_hash)], reason, created)
        for kind, subject_hash, _, reason, created in _matching(wh, held)
    ]
