"""Group commit: one writer thread stores the events of many concurrent requests in one transaction.

A request hands its rows to :meth:`GroupWriter.write` and awaits the answer; the writer thread takes
every job waiting in its queue (up to :data:`MAX_GROUP_ROWS` rows), stores them all with
:func:`~personify.ingest.tracking.store.store` in one transaction, and only after the commit
returned — the warehouse has written its log to disk — resolves each request's future. So every
acknowledged event is durable, and the cost of a commit (an ``fsync``) is shared by every request
that arrived while the previous one ran: the busier the server, the larger the groups.

Under load the writer gathers before it commits: each commit's answers set off a burst (their
clients send again at once, and the normalizer helper hands their requests over one by one), so
when the previous group held several requests, the next one waits — for up to
:data:`GATHER_MAX` — until as many requests have come (or :data:`GATHER_ROWS` events): one
commit takes the whole burst instead of its first few, and runs once the event loop is through
with it. A lone client's requests never wait (its groups hold one request each), and two
clients' wait only for each other.

A group that fails is retried job by job, so one request that cannot be stored fails alone; a job
that fails again fails with :class:`StoreUnavailable` (the API answers 503: nothing acknowledged).
A full queue (:data:`MAX_QUEUED_JOBS`) refuses new jobs at once, for the sender to retry later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, overload

import pyarrow as pa

from personify.errors import ServiceUnavailable
from personify.ingest.tracking.normalize import Row
from personify.ingest.tracking.store import QuarantineRow, events_table, store
from personify.warehouse import Warehouse

log = logging.getLogger("personify.ingest.tracking")

MAX_GROUP_ROWS: Final = 20_000
"""Rows stored in one transaction at most (jobs are never split)."""
MAX_QUEUED_JOBS: Final = 2_000
"""Requests waiting for the writer at most; more are refused (503) until it catches up."""
TRANSIENT_RETRIES: Final = 2
"""Extra attempts of a group that fails (a write conflict with another transaction …)."""
GATHER_ROWS: Final = 1_000
"""Under load, a group with fewer events waits for more requests (see the module doc)."""
GATHER_MAX: Final = 0.015
"""Seconds a group gathers at most. Measured (``benchmarks/tracking_throughput.py``, session
9; ``benchmarks/RESULTS.md``, tracking): at 16 clients the rate moved within the noise while
commits grew from ~656 to ~810 events (a fifth fewer fsyncs, less CPU per event); at 2 clients
10,757 against 8,509 events/s with the first version's rule (gather while requests came at most
5 ms apart). A plain 15 ms pause held p99 lower still (242–366 ms against up to 930) but would
cost two steady clients 15 ms a request."""


class StoreUnavailable(ServiceUnavailable):
    """The events could not be stored (the warehouse failed, or the writer is overloaded)."""


@dataclass
class Job:
    """One request's rows and quarantine rows, and where to send the outcome."""

    rows: Sequence[Row]
    quarantine: Sequence[QuarantineRow]
    locations: Sequence[str]
    done: Callable[[list[int] | BaseException], None]
    queued_at: float = field(default_factory=time.perf_counter)
    table: pa.Table | None = None
    """The rows as Arrow, built by the submitting thread (off the writer's critical path)."""


@dataclass
class WriterStats:
    """Counters the server exports as metrics."""

    commits: int = 0
    """Transactions committed."""
    rows: int = 0
    """Event rows handed to those transactions."""
    failures: int = 0
    """Requests that could not be stored."""


class GroupWriter:
    """The writer thread of one warehouse."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        max_group_rows: int = MAX_GROUP_ROWS,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_commit(rows, seconds)`` is called after each commit (metrics)."""
        self.warehouse = warehouse
        self.max_group_rows = max_group_rows
        self.on_commit = on_commit
        self.stats = WriterStats()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=MAX_QUEUED_JOBS)
        self._thread = threading.Thread(target=self._run, name="personify-writer", daemon=True)
        self._thread.start()

    # -- submitting
    def submit(self, job: Job) -> None:
        """Queue ``job``; raises :class:`StoreUnavailable` when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise StoreUnavailable("the event writer is overloaded; retry shortly") from None

    async def write(
        self,
        rows: Sequence[Row],
        quarantine: Sequence[QuarantineRow] = (),
        locations: Sequence[str] = (),
    ) -> list[int]:
        """Store the rows durably; the status of each row (see :mod:`.store`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()

        def settle(result: list[int] | BaseException) -> None:
            if future.done():
                return  # the request went away; the rows are stored all the same
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        def done(result: list[int] | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, result)

        table = events_table(rows) if rows else None  # here, on the event loop: the writer
        # thread then only concatenates (it was ~2 ms of its Python per 800-event commit)
        self.submit(Job(rows, quarantine, locations, done, table=table))
        return await future

    def write_sync(
        self, rows: Sequence[Row], quarantine: Sequence[QuarantineRow] = ()
    ) -> list[int]:
        """:meth:`write` for threads without an event loop (blocks until stored)."""
        box: list[list[int] | BaseException] = []
        ready = threading.Event()

        def done(result: list[int] | BaseException) -> None:
            box.append(result)
            ready.set()

        self.submit(Job(rows, quarantine, (), done, table=events_table(rows) if rows else None))
        ready.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- the thread
    def _take(self, first: Job) -> tuple[list[Job], bool]:
        jobs, rows = [first], len(first.rows)
        while rows < self.max_group_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            rows += len(job.rows)
        return jobs, False

    def _run(self) -> None:
        stop, burst = False, 1
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._take(first)
            if burst > 1 and not stop:
                stop = self._gather(jobs, burst)
            burst = len(jobs)
            self._commit_group(jobs)

    def _gather(self, jobs: list[Job], burst: int) -> bool:
        """Add requests to ``jobs`` until there are ``burst`` of them (the previous group's
        size), :data:`GATHER_ROWS` events or :data:`GATHER_MAX` seconds; True when the writer
        was asked to stop meanwhile."""
        rows = sum(len(j.rows) for j in jobs)
        deadline = time.monotonic() + GATHER_MAX
        while len(jobs) < burst and rows < GATHER_ROWS:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                job = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if job is None:
                return True
            jobs.append(job)
            rows += len(job.rows)
        return False

    def _commit_group(self, jobs: list[Job]) -> None:
        rows = [r for j in jobs for r in j.rows]
        held = [r for j in jobs for r in j.quarantine]
        locations = _Locations(jobs)
        started = time.perf_counter()
        tables = [j.table for j in jobs if j.table is not None]  # (every job with rows has one)
        table = pa.concat_tables(tables) if tables else None
        try:
            status = self._attempt(rows, held, locations, table)
        except Exception as e:
            if len(jobs) > 1:
                log.warning(  # the type only: driver messages can quote the data
                    "group commit of %d requests failed (%s); one by one",
                    len(jobs),
                    type(e).__name__,
                )
                for job in jobs:
                    self._commit_group([job])
                return
            self.stats.failures += 1
            log.error("storing %d events failed: %s", len(rows), type(e).__name__)
            reason = type(e).__name__
            jobs[0].done(StoreUnavailable(f"the warehouse could not store the events ({reason})"))
            return
        self.stats.commits += 1
        self.stats.rows += len(rows)
        if self.on_commit is not None:
            self.on_commit(len(rows), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            job.done(status[offset : offset + len(job.rows)])
            offset += len(job.rows)

    def _attempt(
        self,
        rows: list[Row],
        held: list[QuarantineRow],
        locations: Sequence[str],
        table: pa.Table | None = None,
    ) -> list[int]:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                return store(self.warehouse, rows, held, locations=locations, table=table)
            except Exception:
                if attempt == TRANSIENT_RETRIES:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")


class _Locations(Sequence[str]):
    """The jobs' row locations end to end, each looked up only when asked: only a conflicting
    duplicate's quarantine row needs one, and joining them all cost a list per group."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self._parts = [(job.locations, len(job.rows)) for job in jobs]
        self._len = sum(n for _, n in self._parts)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, at: int) -> str: ...
    @overload
    def __getitem__(self, at: slice) -> list[str]: ...
    def __getitem__(self, at: int | slice) -> str | list[str]:
        if isinstance(at, slice):
            return [self[i] for i in range(*at.indices(self._len))]
        index = at + self._len if at < 0 else at
        if not 0 <= index < self._len:
            raise IndexError(at)
        for locations, n in self._parts:
            if index < n:
                return locations[index] if locations else ""
            index -= n
        raise IndexError(at)
