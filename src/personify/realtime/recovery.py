"""After a crash, continuous mode applies what the dead process stored but never applied.

A serving process's applier keeps its inputs in memory between storing them and the pass that
applies them; ``kill -9`` (a crash, an OOM kill, a power cut) in between leaves them stored and
unapplied — until the next ``personify run``. So every :data:`BEAT` seconds the applier writes
down how far it got: an instant before which every input it was given is applied
(``identity_state`` key ``continuous.unapplied:<name>``, ``name`` the process's host and port,
which a restarted process shares with the one it replaces). That instant is the oldest input
still waiting for its pass (or now, when none is) less :data:`MARGIN` — the longest an input
takes from being received (its ``received_at``) to being handed to the applier.

When a serving process starts, it reads its own mark, and the marks of other processes that
stopped beating :data:`STALE` seconds ago (dead, not coming back under their name: taken
over and deleted), and gives its applier one catch-up pass over every event, person record,
order and ticket received since the oldest of them — applying twice changes nothing. A clean
shutdown writes a last mark (what it could not apply stays after it). Bus workers need none of
this: a message is acked only once applied (:mod:`personify.realtime.bus`).
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta
from typing import Final

from personify import clock
from personify.warehouse.base import Warehouse

log = logging.getLogger("personify.realtime")

KEY: Final = "continuous.unapplied:"
BEAT: Final = 5.0
"""Seconds between two marks of a running applier."""
MARGIN: Final = timedelta(seconds=60)
"""The longest an input may take from being received to being handed to the applier (a
tracking batch waiting for its group commit, a webhook delivery's store retried on conflicts:
seconds)."""
STALE: Final = timedelta(seconds=60)
"""A mark not renewed for this long belongs to a process that is gone."""


def process_name(port: int) -> str:
    """The mark's name for a serving process: its host and port (a restart keeps both)."""
    return f"{socket.gethostname()}:{port}"


def mark(wh: Warehouse, name: str, since: datetime) -> None:
    """Every input given to ``name``'s applier and received before ``since`` is applied."""
    wh.execute(
        "INSERT INTO identity_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        [KEY + name, since.isoformat(), clock.now()],
    )


def recover(wh: Warehouse, name: str) -> datetime | None:
    """The instant to catch up from when ``name`` starts: the oldest of its own mark and of
    the stale marks of others (which are deleted: this process takes them over). ``None``
    when there is nothing to catch up."""
    now = clock.now()
    found: list[datetime] = []
    taken: list[str] = []
    for key, value, beat in wh.fetch(
        "SELECT key, value, updated_at FROM identity_state WHERE key LIKE ? ORDER BY key",
        [KEY + "%"],
    ):
        mine = key == KEY + name
        if not mine and (not isinstance(beat, datetime) or beat > now - STALE):
            continue  # a live process's
        try:
            found.append(clock.parse_instant(str(value)))
        except ValueError:
            log.warning("continuous mode: an unreadable mark %s was ignored", key)
        if not mine:
            taken.append(str(key))
    if taken:
        wh.execute(
            f"DELETE FROM identity_state WHERE key IN ({', '.join('?' for _ in taken)})", taken
        )
    return min(found) if found else None
