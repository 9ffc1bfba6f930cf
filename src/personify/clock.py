"""The one place "now" comes from.

Every time-dependent piece of Personify asks :func:`now`. The CLI's ``--now`` (and tests) pin it
with :func:`frozen`; otherwise it is the system clock. Always timezone-aware UTC.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import UTC, datetime

_pinned: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "personify_now", default=None
)


def now() -> datetime:
    """The current instant (aware, UTC): the pinned one if any, else the system clock."""
    pinned = _pinned.get()
    return pinned if pinned is not None else datetime.now(UTC)


def pinned() -> datetime | None:
    """The instant pinned in this context (``None``: the system clock). A new thread starts
    with none: whoever starts one that must keep the caller's "now" hands this on
    (:func:`frozen` inside the thread)."""
    return _pinned.get()


def wall() -> datetime:
    """The system clock, whatever is pinned: for a position that must never run ahead of real
    time (an events destination's floor: a ``--now`` in the future must not skip what arrives
    until then)."""
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant; a naive one is taken as UTC. Raises ``ValueError``."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@contextlib.contextmanager
def frozen(instant: datetime | str | None) -> Iterator[datetime]:
    """Pin "now" to ``instant`` inside the block (``None`` leaves the system clock)."""
    if instant is None:
        yield now()
        return
    value = parse_instant(instant) if isinstance(instant, str) else instant.astimezone(UTC)
    token = _pinned.set(value)
    try:
        yield value
    finally:
        _pinned.reset(token)


def pin(instant: datetime | None) -> None:
    """Pin "now" for the rest of this context (used once by the CLI for ``--now``)."""
    _pinned.set(instant.astimezone(UTC) if instant is not None else None)
