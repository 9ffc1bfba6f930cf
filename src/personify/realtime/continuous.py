"""Continuous mode: every event the tracking API (or a bus worker) stored, every webhook
delivery and every record a scheduled sync brought is applied to its customer within a second.

One thread per process (:class:`Applier`) takes everything waiting and applies it in one pass:

1. identity and profile (fields and computed traits) through the very pass the batch stage runs
   (:func:`personify.profiles.realtime.apply`), then the profile cache is invalidated for the
   customers it touched — the new value is visible to send-time lookups from here;
2. for those customers, real-time segments, rules and journey entries
   (:func:`personify.realtime.reactions.react`: the batch SQL, restricted to them).

Between passes, once a second, the journeys' clock (:func:`personify.realtime.reactions.tick`):
due instances advance (an abandoned cart's wait expired), due emails are sent.

Cheap under load: an applier starts a pass the moment something arrives; a busy one (its last
pass took :data:`BUSY_PASS` inputs or more) starts at most one pass per :data:`PASS_INTERVAL`,
and rests at least as long as its last pass took, so a burst of events coalesces into one pass
over their customers (much of a pass's cost is per pass, not per event) and continuous mode
takes at most about half of one core from ingest.
A pass that loses a write-write race with another writer (a webhook's apply, the batch build, a
``personify run`` forwarded to the server: DuckDB's "Conflict on tuple", PostgreSQL's
serialization failures and deadlocks) is run again, whole, after a jittered backoff
(:func:`personify.warehouse.retry.retry_conflicts`, for up to :data:`PATIENCE` seconds) — so is
its reaction step and the journeys' tick. A pass that still fails (the other writer is a batch
build of many minutes, the warehouse was unreachable for a while) is logged and its inputs are
tried again later, each submission in a pass of its own (one input that always fails does not
take fresh ones down with it), seven times, :data:`RETRY_AFTER` seconds apart — some ten
minutes; only then are they left to the batch path (``personify run``, or ``recompute:``).
Every ``submit…`` returns a future that says how its inputs' pass ended (:data:`Applied`).

What a scheduled sync stored (``submit_synced``: its source and when it started) is found by
``received_at``: the events and person records, and the orders, order items and tickets it
stored or updated since then.

The backlog stays bounded under a load continuous mode cannot keep up with: past
:data:`MAX_QUEUED_EVENTS` queued message ids, a writer's new events are no longer queued by id
(~90 bytes each) but as a *window* — the span of their ``received_at``, up to :data:`MAX_PASS`
events per window, a few dozen bytes whatever its size — and the pass that takes a window reads
its events back by that span (with any other event received in it: applying one twice changes
nothing). Events are stored before they are submitted, so a window's events are all there.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from personify import clock
from personify.identity.sightings import NOTHING, Scope, Where
from personify.ingest.tracking.normalize import EPOCH, EVENT_COLUMNS
from personify.ingest.tracking.store import NEW
from personify.realtime.recovery import BEAT, MARGIN
from personify.session import Session
from personify.warehouse.base import UNNEST
from personify.warehouse.retry import retry_conflicts

log = logging.getLogger("personify.realtime")

MAX_PASS: Final = 50_000
"""Inputs applied in one pass at most. Most of a pass's cost is per pass (a few hundred
statements), so under load a larger pass applies more events per CPU-second: the tracking
benchmark's events cost 193 / 52 / 28 µs of CPU each in passes of 5,000 / 20,000 / 50,000
(``benchmarks/continuous_cpu.py --tracking``, session 5). The queue then holds the backlog (one
item per submission: a request's ids) and a pass's scope 50,000 message ids."""
PASS_INTERVAL: Final = 0.5
"""Seconds between the starts of two passes when busy (an idle applier starts at once)."""
BUSY_PASS: Final = 100
"""A pass of at least this many inputs means load: the next one waits (see the module doc)."""
TICK: Final = 1.0
"""Seconds between two journey ticks (waits expiring, due emails sent)."""
PATIENCE: Final = 30.0
"""Seconds a pass (or a tick) keeps retrying write-write conflicts before it is given up."""
RETRY_AFTER: Final = (5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0)
"""Seconds before each retry of a failed submission (the n-th retry waits the n-th figure):
with :data:`PATIENCE` per pass, about ten minutes from the first failure to the last."""
MAX_QUEUED_EVENTS: Final = 100_000
"""Events queued by message id at most (~9 MB); more new events wait as windows of their
``received_at`` (see the module doc). Over 1.2 M events sent at full speed the queued ids had
taken the two serving processes to the memory goal's edge (499–510 MB, session 8)."""
_IN: Final = f"IN (SELECT {UNNEST})"
_RECEIVED: Final = EVENT_COLUMNS.index("received_at")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Item:
    """One submission (a request's stored events, a delivery, a sync): one lock and one queue
    operation for all its inputs — one per event cost the event loop ~2-7 µs per event."""

    kind: str
    """``event`` (message ids), ``order``, ``record`` ((source, record id) pairs), ``synced``
    ((source, since): what a sync stored), ``customer``, ``window`` ((first, last): events
    received in that span, µs since 1970 — see :data:`MAX_QUEUED_EVENTS`)."""
    keys: tuple[Any, ...]
    queued: float
    size: int = -1
    """Inputs it stands for (``-1``: one per key; a window's events)."""
    waiters: tuple[Future[None], ...] = ()
    """Resolved when the pass that takes it ends (see :class:`Applied`)."""
    attempt: int = 0
    """Passes that failed over it so far (a retry is applied in a pass of its own)."""

    @property
    def inputs(self) -> int:
        return len(self.keys) if self.size < 0 else self.size


@dataclass(slots=True)
class _Window:
    """New events not queued by id: the span of their ``received_at`` (µs) and their count."""

    first: int
    last: int
    events: int
    queued: float
    waiters: list[Future[None]] = field(default_factory=list)

    def item(self) -> _Item:
        span = ((self.first, self.last),)
        return _Item("window", span, self.queued, self.events, tuple(self.waiters))


class PassFailed(Exception):
    """What an :data:`Applied` future holds when the last pass over its inputs failed."""


Applied = Future
"""What a ``submit…`` call returns: a future resolved (``None``) once the pass that took the
submission has applied it — identity, profile and reactions committed — or failed with
:class:`PassFailed` when its last pass failed too (see the retries in the module doc). A bus
worker acks a message only then (:mod:`personify.realtime.bus`), so a worker killed between
storing and applying leaves it to be delivered again, not lost."""


class Applier:
    """The continuous-mode thread of one process."""

    def __init__(
        self,
        session: Session,
        on_applied: Callable[[int, float], None] | None = None,
        *,
        react: bool = True,
        tick_every: float | None = TICK,
        pass_interval: float = PASS_INTERVAL,
        on_reacted: Callable[[Any], None] | None = None,
        max_queued_events: int = MAX_QUEUED_EVENTS,
        patience: float = PATIENCE,
        retry_after: Sequence[float] = RETRY_AFTER,
        marker: Callable[[datetime], None] | None = None,
        beat: float = BEAT,
    ) -> None:
        """``on_applied(inputs, seconds_since_the_oldest_was_queued)`` after each pass's profile
        step; ``react``: also segments, rules, journey entries; ``tick_every``: seconds between
        journey ticks (``None``: no ticks); ``on_reacted(Reaction)`` after each reaction;
        ``max_queued_events``: see :data:`MAX_QUEUED_EVENTS`; ``patience``: see
        :data:`PATIENCE`; ``retry_after``: the waits before each retry of a failed submission
        (as many retries as figures, :data:`RETRY_AFTER`); ``marker(since)``, every
        ``beat`` seconds (:data:`~personify.realtime.recovery.BEAT`) and on close: every input
        given so far and received before ``since`` is applied (see
        :mod:`personify.realtime.recovery`)."""
        self.session = session
        self.on_applied = on_applied
        self.on_reacted = on_reacted
        self.reacting = react
        self.tick_every = tick_every
        self.pass_interval = pass_interval
        self.applied = 0
        self.passes = 0
        self.ticks = 0
        self.failures = 0
        """Passes (and ticks) that failed, retried ones included."""
        self.retried = 0
        """Submissions queued for another pass after theirs failed."""
        self.given_up = 0
        """Submissions whose last pass failed too (left to the batch path)."""
        self.patience = patience
        self.retry_after = tuple(retry_after)
        self._retries: list[tuple[float, _Item]] = []
        """Failed submissions and when each is due again (guarded by ``_done``)."""
        self.marker = marker
        self.beat = beat
        self._waiting: collections.Counter[float] = collections.Counter()
        """When each submission not yet through its last pass was queued (``perf_counter``;
        guarded by ``_done``): the oldest bounds the recovery mark."""
        self.conflicts = 0
        """Write-write conflicts met (and retried) so far."""
        self.windowed = 0
        """New events submitted as windows rather than by id (the queue was full)."""
        self.max_queued_events = max_queued_events
        self._queue: queue.Queue[_Item | _Window | None] = queue.Queue()
        self._pending = 0
        """Inputs submitted and not yet through a pass (guarded by ``_done``, as are the two
        below)."""
        self._queued_events = 0
        """Event ids in the queue (taken off when a pass takes them)."""
        self._window: _Window | None = None
        """The window new events join (queued when opened; closed when full or taken)."""
        self._done = threading.Condition()
        self._in_pass = 0
        """Inputs of the pass under way."""
        context = contextvars.copy_context()  # the creator's clock (a pinned --now) holds
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="personify-applier", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------------------ submit
    def _put(
        self, kind: str, keys: Iterable[Any], queued: float | None = None
    ) -> Applied[None] | None:
        applied: Applied[None] = Future()
        at = time.perf_counter() if queued is None else queued
        item = _Item(kind, tuple(keys), at, waiters=(applied,))
        if not item.keys:
            return None
        with self._done:  # counted before it is queued: wait_idle cannot miss it
            self._pending += len(item.keys)
            self._waiting[item.queued] += 1
        self._queue.put(item)
        return applied

    def submit(self, message_ids: Iterable[str]) -> Applied[None] | None:
        """Stored events, by ``message_id`` (a webhook's, a few at a time: always queued by id;
        a writer's go through :meth:`submit_stored`). Each ``submit…`` returns the submission's
        :data:`Applied` future (``None`` when there was nothing to submit)."""
        return self._put("event", message_ids)

    def submit_stored(
        self, rows: Sequence[Sequence[Any]], status: Sequence[int]
    ) -> Applied[None] | None:
        """What a store call made new: the rows (``EVENT_COLUMNS``) whose ``status`` is ``NEW``
        — by id while fewer than :attr:`max_queued_events` are queued, else in a window."""
        new = [r for r, s in zip(rows, status, strict=True) if s == NEW]
        if not new:
            return None
        applied: Applied[None] = Future()
        by_id = self._queued_events + len(new) <= self.max_queued_events  # (read unlocked:
        # a race only moves one request's ids between the queue and a window)
        opened: _Window | None = None
        queued = time.perf_counter()
        with self._done:  # counted before it is queued: wait_idle cannot miss it
            self._pending += len(new)
            if by_id:
                self._queued_events += len(new)
                self._waiting[queued] += 1
            else:
                self.windowed += len(new)
                first = min(r[_RECEIVED] for r in new)
                last = max(r[_RECEIVED] for r in new)
                window = self._window
                if window is None:  # queued at once; it grows until a pass takes it
                    window = opened = self._window = _Window(first, last, 0, queued)
                    self._waiting[queued] += 1
                window.first, window.last = min(window.first, first), max(window.last, last)
                window.events += len(new)
                window.waiters.append(applied)  # (under the lock: a pass takes all or none)
                if window.events >= MAX_PASS:
                    self._window = None  # full: the next ones open another
        if by_id:
            ids = tuple(str(r[0]) for r in new)
            self._queue.put(_Item("event", ids, queued, waiters=(applied,)))
        elif opened is not None:
            self._queue.put(opened)
        return applied

    def submit_orders(self, order_ids: Iterable[str]) -> Applied[None] | None:
        return self._put("order", order_ids)

    def submit_records(self, source: str, record_ids: Iterable[str]) -> Applied[None] | None:
        """Person records of ``source`` (every stored version of each)."""
        return self._put("record", ((source, r) for r in record_ids))

    def submit_synced(self, source: str, since: datetime) -> Applied[None] | None:
        """Whatever a sync of ``source`` stored: records, events, orders (and their items) and
        tickets received since ``since``."""
        return self._put("synced", [(source, since)])

    def submit_since(self, since: datetime) -> Applied[None] | None:
        """Whatever any source stored since ``since`` — records, events, orders (and their
        items) and tickets: the catch-up after a crash (:mod:`personify.realtime.recovery`).
        Until its pass is through, the recovery mark stays at ``since``."""
        age = max(0.0, (clock.now() - since).total_seconds())
        return self._put("synced", [(None, since)], queued=time.perf_counter() - age)

    def submit_delivery(self, source: str, table: str, key: str) -> Applied[None] | None:
        """What an accepted webhook delivery of ``source`` stored: the record ``key`` of
        ``table`` (orders, customers, events). ``None`` for another table (nothing queued)."""
        if table == "orders":
            return self.submit_orders([key])
        if table == "customers":
            return self.submit_records(source, [key])
        if table == "events":
            return self.submit([key])
        return None

    def submit_customers(self, customer_ids: Iterable[str]) -> Applied[None] | None:
        """Customers to rebuild and react for (a consent change, a manual edit)."""
        return self._put("customer", customer_ids)

    # ------------------------------------------------------------------------------ state
    @property
    def depth(self) -> int:
        """Inputs waiting to be applied (not counting the pass under way)."""
        return max(0, self._pending - self._in_pass)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until everything submitted so far is applied (tests, shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def unapplied_since(self) -> datetime:
        """An instant before which every input given to this applier is applied (or given
        up): the oldest submission still waiting, less the recovery margin."""
        with self._done:
            oldest = min(self._waiting, default=None)
        behind = 0.0 if oldest is None else max(0.0, time.perf_counter() - oldest)
        return clock.now() - timedelta(seconds=behind) - MARGIN

    def _mark(self) -> None:
        assert self.marker is not None
        try:
            self.marker(self.unapplied_since())
        except Exception as e:  # the next beat writes it again
            log.debug("continuous mode: the recovery mark was not written (%s)", type(e).__name__)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop after what is queued (and a tick under way); True once the thread ended.
        Retries not yet due are dropped (their inputs are stored: the batch path applies them;
        on the bus, their messages were not acked and are delivered again)."""
        self._queue.put(None)
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if stopped and self.marker is not None:  # what is left (retries not yet due) stays
            self._mark()  # after the mark: the next start applies it
        return stopped

    # ------------------------------------------------------------------------------ loop
    def _run(self) -> None:
        last_pass = last_end = -float("inf")
        last_took, last_size = 0.0, 0
        next_tick = time.monotonic() + (self.tick_every or 0)
        next_beat = time.monotonic() + self.beat  # (the first mark is the starter's)
        solo = False
        while True:
            # a retry due runs in a pass of its own, but never twice in a row: what is queued
            # gets its turn in between
            first = None if solo else self._due()
            solo = first is not None
            if first is None:
                try:
                    wait = self._wait(next_tick, next_beat)
                    first = self._take(self._queue.get(timeout=wait))
                except queue.Empty:
                    first = _NOTHING
            if first is None:
                return
            stop = False
            if first is not _NOTHING:
                # a pass just ran: let this one gather a burst — at least pass_interval between
                # starts, and at least as long idle as the last pass took (under load the
                # applier gets at most half its thread's time, and passes grow instead)
                if last_size >= BUSY_PASS:
                    ready = max(last_pass + self.pass_interval, last_end + last_took)
                    busy = ready - time.monotonic()
                    if busy > 0:
                        time.sleep(busy)
                batch, size = [first], first.inputs
                while not solo and size < MAX_PASS:  # (a submission is never split)
                    try:
                        item = self._take(self._queue.get_nowait())
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                    size += item.inputs
                with self._done:
                    self._queued_events -= sum(
                        i.inputs for i in batch if i.kind == "event" and not i.attempt
                    )
                last_pass, last_size, self._in_pass = time.monotonic(), size, size
                failed: str | None = "the pass stopped"
                try:
                    failed = self._pass(batch, size)
                finally:
                    later = self._retry(batch, failed)
                    kept = {id(i) for i in later}  # (resolved before wait_idle returns)
                    done = [i for i in batch if id(i) not in kept]
                    _resolve(done, failed)
                    with self._done:
                        self._pending -= size - sum(i.inputs for i in later)
                        self._waiting.subtract(i.queued for i in done)
                        self._waiting = +self._waiting  # (the counts at zero dropped)
                        self._in_pass = 0
                        if self._pending == 0:
                            self._done.notify_all()
                last_end = time.monotonic()
                last_took = last_end - last_pass
            if self.tick_every is not None and time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + self.tick_every
            if self.marker is not None and time.monotonic() >= next_beat:
                self._mark()
                next_beat = time.monotonic() + self.beat
            if stop:
                return

    def _wait(self, next_tick: float, next_beat: float) -> float | None:
        """Seconds the loop may wait for a submission: until the next tick, mark or retry."""
        now = time.monotonic()
        waits = [] if self.tick_every is None else [next_tick - now]
        waits += [] if self.marker is None else [next_beat - now]
        with self._done:
            waits += [due - now for due, _ in self._retries]
        return max(0.0, min(waits)) if waits else None

    def _due(self) -> _Item | None:
        """The failed submission due for its next pass, if one is."""
        with self._done:
            for i, (due, item) in enumerate(self._retries):
                if due <= time.monotonic():
                    del self._retries[i]
                    return item
        return None

    def _retry(self, batch: list[_Item], failed: str | None) -> list[_Item]:
        """After a failed pass: its submissions that have passes left, queued for a retry."""
        if failed is None:
            return []
        later = [i for i in batch if i.attempt < len(self.retry_after)]
        with self._done:
            for item in later:
                due = time.monotonic() + self.retry_after[item.attempt]
                self._retries.append((due, dataclasses.replace(item, attempt=item.attempt + 1)))
            self.retried += len(later)
            self.given_up += len(batch) - len(later)
        if later:
            wait = self.retry_after[min(i.attempt for i in later)]
            log.warning("%d submission(s) will be tried again in %.0f s", len(later), wait)
        if len(later) < len(batch):
            log.warning(
                "%d submission(s) failed %d times; left to the batch path (personify run)",
                len(batch) - len(later),
                len(self.retry_after) + 1,
            )
        return later

    def _take(self, got: _Item | _Window | None) -> _Item | None:
        """A queue entry as an item: a window is closed first (no event joins it after)."""
        if not isinstance(got, _Window):
            return got
        with self._done:
            if self._window is got:
                self._window = None
            return got.item()

    def _pass(self, batch: list[_Item], inputs: int) -> str | None:
        """Apply, then react; what failed (``None``: nothing)."""
        from personify.profiles.realtime import apply

        self.passes += 1
        scope, customers = _scope(batch)
        try:
            touched = self._retried(lambda: apply(self.session, scope, customers))
        except Exception as e:  # stored already: the batch path catches up
            self.failures += 1
            log.warning("real-time pass over %d inputs failed (%s)", inputs, type(e).__name__)
            return f"the real-time pass failed ({type(e).__name__})"
        self.applied += inputs
        if self.on_applied is not None:
            self.on_applied(inputs, time.perf_counter() - min(i.queued for i in batch))
        if not self.reacting or not touched:
            return None
        from personify.realtime.reactions import react

        try:
            reaction = self._retried(lambda: react(self.session, touched))
        except Exception as e:
            self.failures += 1
            log.warning(
                "real-time segments/rules/journeys for %d customers failed (%s)",
                len(touched),
                type(e).__name__,
            )
            return f"real-time segments/rules/journeys failed ({type(e).__name__})"
        if self.on_reacted is not None:
            self.on_reacted(reaction)
        return None

    def _tick(self) -> None:
        from personify.realtime.reactions import tick

        try:
            self._retried(lambda: tick(self.session))
        except Exception as e:  # the next tick tries again
            self.failures += 1
            log.warning("journey tick failed (%s)", type(e).__name__)
        self.ticks += 1

    def _retried(self, work: Callable[[], _T]) -> _T:
        return retry_conflicts(work, patience=self.patience, on_conflict=self._conflict)

    def _conflict(self, error: BaseException) -> None:
        self.conflicts += 1
        log.debug("real-time: a write-write conflict (%s); retrying", type(error).__name__)


_NOTHING: Final = _Item("", (), 0.0)
"""The queue had nothing before the next tick."""


def _resolve(batch: Sequence[_Item], failed: str | None) -> None:
    """The pass's submissions learn how it ended (see :data:`Applied`)."""
    for item in batch:
        for waiter in item.waiters:
            with contextlib.suppress(InvalidStateError):  # cancelled by its waiter
                if failed is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(PassFailed(failed))


def _or(parts: list[Where]) -> Where:
    if not parts:
        return NOTHING
    return (
        " OR ".join(f"({sql})" for sql, _ in parts),
        tuple(p for _, params in parts for p in params),
    )


def _at(us: int) -> datetime:
    """µs since 1970 as an aware UTC datetime (how the rows carry ``received_at``)."""
    return EPOCH + timedelta(microseconds=us)


def _merged(batch: Sequence[_Item]) -> list[tuple[int, int]]:
    """The windows' spans, overlapping ones merged (a pass's statement stays small)."""
    spans = sorted(key for i in batch if i.kind == "window" for key in i.keys)
    out: list[tuple[int, int]] = []
    for first, last in spans:
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _scope(batch: Sequence[_Item]) -> tuple[Scope, list[str]]:
    """One :class:`Scope` over every input of the pass, and the customers given directly."""

    def keys(kind: str) -> list[str]:
        return sorted({str(k) for i in batch if i.kind == kind for k in i.keys})

    events, orders, customers = keys("event"), keys("order"), keys("customer")
    records: dict[str, set[str]] = {}
    synced: dict[str | None, datetime] = {}  # (None: every source, a catch-up)
    for i in batch:
        for key in i.keys if i.kind in ("record", "synced") else ():
            if i.kind == "record":
                records.setdefault(str(key[0]), set()).add(str(key[1]))
            else:
                source, since = key
                source = None if source is None else str(source)
                synced[source] = min(since, synced.get(source, since))
    event_parts: list[Where] = [(f"message_id {_IN}", ([*events],))] if events else []
    spans = [(_at(first), _at(last)) for first, last in _merged(batch)]
    event_parts += [("received_at >= ? AND received_at <= ?", span) for span in spans]
    record_parts: list[Where] = [
        (f"source = ? AND record_id {_IN}", (source, sorted(ids)))
        for source, ids in sorted(records.items())
    ]
    order_parts: list[Where] = [(f"order_id {_IN}", ([*orders],))] if orders else []
    ticket_parts: list[Where] = []
    for source, since in sorted(synced.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")):
        recent: Where = (
            ("received_at >= ?", (since,))
            if source is None
            else ("source = ? AND received_at >= ?", (source, since))
        )
        event_parts.append(recent)
        record_parts.append(recent)
        # by key, in a subquery: the inputs' readers join other tables that have a source too
        ticket_parts.append(
            (f"ticket_id IN (SELECT ticket_id FROM tickets WHERE {recent[0]})", recent[1])
        )
        order_parts.append(  # and the orders of items stored without them (a file of lines)
            (
                f"order_id IN (SELECT order_id FROM orders WHERE {recent[0]} UNION "
                f"SELECT order_id FROM order_items WHERE {recent[0]})",
                recent[1] * 2,
            )
        )
    scope = Scope(
        events=_or(event_parts),
        records=_or(record_parts),
        orders=_or(order_parts),
        tickets=_or(ticket_parts),
    )
    return scope, customers


class ApplyingWriter:
    """Wraps the tracking routes' writer: what it stored as new goes to the :class:`Applier`."""

    def __init__(self, inner: Any, applier: Applier) -> None:
        self.inner = inner
        self.applier = applier
        self.stats = inner.stats

    async def write(
        self, rows: Sequence[Any], quarantine: Sequence[Any] = (), locations: Sequence[str] = ()
    ) -> list[int]:
        status: list[int] = await self.inner.write(rows, quarantine, locations)
        self.applier.submit_stored(rows, status)
        return status

    def write_sync(self, rows: Sequence[Any], quarantine: Sequence[Any] = ()) -> list[int]:
        status: list[int] = self.inner.write_sync(rows, quarantine)
        self.applier.submit_stored(rows, status)
        return status

    def close(self, timeout: float = 10.0) -> None:
        self.inner.close(timeout)
        with contextlib.suppress(Exception):
            self.applier.wait_idle(timeout)
