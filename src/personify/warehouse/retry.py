"""Write-write conflicts, retried: a transaction that lost a race with another writer is run
again, whole, instead of failing (or being dropped).

Several writers touch the same rows — a webhook's real-time apply, continuous mode's passes, the
journeys' tick, the batch profile build, a sync re-storing an order — so a transaction may lose a
race: DuckDB reports "Conflict on tuple …" (or a keyed table written by a transaction that began
later), PostgreSQL a serialization failure or a deadlock (SQLSTATE 40001, 40P01). Such a
transaction was rolled back whole and may simply be run again (:func:`retry_conflicts`, after a
jittered exponential backoff); any other error is raised at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final, TypeVar

from personify.errors import Transient

T = TypeVar("T")

FIRST_DELAY: Final = 0.02
"""Seconds the first backoff may last at most (full jitter below a doubling ceiling)."""
MAX_DELAY: Final = 1.0
"""The ceiling's largest value, in seconds."""
MIN_ATTEMPTS: Final = 3
"""Attempts made however long each waited for a lock (patience may run out during the first)."""
_CONFLICT_TEXTS: Final = (
    "Conflict on",  # DuckDB: "TransactionContext Error: Conflict on tuple deletion!"
    "written by another transaction after this one began",  # keyed DuckDB tables
    "could not serialize access",  # PostgreSQL 40001
    "deadlock detected",  # PostgreSQL 40P01
)
_CONFLICT_STATES: Final = frozenset({"40001", "40P01"})


def is_write_conflict(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says a transaction lost a race with another writer
    and may simply be run again: DuckDB's ``TransactionException`` and "Conflict on …" errors, a
    keyed DuckDB table written by a transaction that began later, PostgreSQL's serialization
    failures and deadlocks (SQLSTATE 40001, 40P01) — and errors marked
    :class:`~personify.errors.Transient` (a busy warehouse)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Transient) or type(current).__name__ == "TransactionException":
            return True
        if getattr(current, "sqlstate", None) in _CONFLICT_STATES:
            return True
        if any(text in str(current) for text in _CONFLICT_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_conflicts(
    work: Callable[[], T],
    *,
    patience: float,
    on_conflict: Callable[[BaseException], None] | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work()``, run again after each write-write conflict (:func:`is_write_conflict`) with a
    jittered exponential backoff (full jitter, from 20 ms doubling up to 1 s), until it succeeds or
    ``patience`` seconds have passed — and at least :data:`MIN_ATTEMPTS` times, however long an
    attempt waited for a lock — then the last conflict is raised. ``work`` must be one whole
    transaction (a conflict rolls it back), or a sequence of idempotent ones. Other errors are
    raised at once."""
    rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
    deadline = time.monotonic() + patience
    delay = FIRST_DELAY
    attempts = 0
    while True:
        attempts += 1
        try:
            return work()
        except Exception as e:
            late = time.monotonic() + delay > deadline
            if not is_write_conflict(e) or (late and attempts >= MIN_ATTEMPTS):
                raise
            if on_conflict is not None:
                on_conflict(e)
        sleep(rng.uniform(0, delay))
        delay = min(delay * 2, MAX_DELAY)


__all__ = ["is_write_conflict", "retry_conflicts"]
