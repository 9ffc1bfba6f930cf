"""Which snapshot (see :mod:`personify.offers.snapshot`) is active on this thread's connection.

Temporary tables belong to one connection, and each thread has its own (``Warehouse``), so the
registry is keyed by warehouse and thread. A call uses a snapshot only when it was taken at the
same ``now`` with the same windows; anything else computes inline, as without one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from personify.warehouse import Warehouse


@dataclass(frozen=True)
class Snapshot:
    """Precomputed tables for offers at one instant."""

    now: datetime
    window_days: int
    """Co-occurrence window of :attr:`co`."""
    lookback_days: int
    """Cart-event lookback of :attr:`moves`."""
    neighbours: int
    """Partners kept per product in :attr:`co`."""
    moves: str
    """Temporary table of every cart event in the lookback (``carts.moves_select``)."""
    co: str
    """Temporary table ``(src, dst, strength)``: every product's strongest partners."""


_ACTIVE: dict[tuple[int, int], Snapshot] = {}
_LOCK = threading.Lock()


def _key(wh: Warehouse) -> tuple[int, int]:
    return id(wh), threading.get_ident()


def register(wh: Warehouse, snap: Snapshot | None) -> Snapshot | None:
    """Make ``snap`` this thread's snapshot on ``wh`` (``None``: none); returns the previous."""
    with _LOCK:
        previous = _ACTIVE.pop(_key(wh), None)
        if snap is not None:
            _ACTIVE[_key(wh)] = snap
    return previous


def active(
    wh: Warehouse,
    *,
    now: datetime,
    window_days: int | None,
    lookback_days: int | None,
    neighbours: int | None = None,
) -> Snapshot | None:
    """This thread's snapshot on ``wh`` if it was taken for these values (``None`` arguments
    are not compared), else ``None``."""
    with _LOCK:
        snap = _ACTIVE.get(_key(wh))
    if snap is None or snap.now != now:
        return None
    if window_days is not None and snap.window_days != window_days:
        return None
    if lookback_days is not None and snap.lookback_days != lookback_days:
        return None
    if neighbours is not None and snap.neighbours < neighbours:
        return None
    return snap
