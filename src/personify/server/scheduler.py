"""Scheduled syncs inside ``personify serve``: each source with a ``schedule:`` is synced when
due, and each destination with one is pushed (:mod:`personify.destinations`), in a background
thread, never two runs of one source or destination at once.

The scheduler wakes when the earliest source is due (:func:`personify.sources.schedule.next_run`,
from the last run recorded in the warehouse, so a restarted server keeps the rhythm), runs the due
sources one after another through :func:`personify.sources.sync_sources` (which holds each
source's lock: a ``personify sync`` forwarded to the server at the same moment waits for it), and
logs a failure without stopping — the failure is recorded, ``personify status`` shows it, and the
next run resumes from the saved state. The same thread evaluates the alerts every ``alerts_every``
(:func:`personify.alerts.check_alerts`; their state in the warehouse keeps a CLI run evaluating at
the same moment from notifying twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from personify import clock
from personify.config import FileSource, RestSource, duration_seconds
from personify.destinations import push_destinations, run_name
from personify.session import Session
from personify.sources import sync_sources
from personify.sources.schedule import last_runs, next_run

log = logging.getLogger("personify.server.scheduler")

DESTINATION = run_name("")
"""The prefix of a destination's run name."""
MAX_SLEEP = 60.0
"""Longest sleep between two looks (a schedule change in the warehouse is seen within it)."""


class Scheduler:
    """The scheduling loop over one session's sources."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stop = threading.Event()
        self.runs = 0
        """Scheduled runs done (for tests and metrics)."""
        self.on_synced: Callable[[str, datetime], object] | None = None
        """Called with (source, started_at) after a sync stored rows (continuous mode)."""
        self.sources = [
            s
            for s in session.project.config.sources
            if isinstance(s, FileSource | RestSource) and s.schedule is not None
        ]
        self.destinations = [
            d for d in session.project.config.destinations if d.schedule is not None
        ]
        config = session.project.config
        self.alerts_every = duration_seconds(config.alerts_every) if config.alerts else None
        """Seconds between two evaluations of the alerts (None: no alerts)."""
        self.alerts_due = 0.0
        """Monotonic instant of the next evaluation of the alerts."""
        self.alert_checks = 0
        """Evaluations of the alerts done (for tests)."""

    def due(self, now: datetime) -> tuple[list[str], float]:
        """Sources and destinations due now (a destination's as its run name,
        ``destination:NAME``), and seconds until the next one is."""
        runs = last_runs(self.session.warehouse)
        due: list[str] = []
        wait = MAX_SLEEP
        planned = [(s.name, s.schedule) for s in self.sources] + [
            (run_name(d.name), d.schedule) for d in self.destinations
        ]
        for name, schedule in planned:
            assert schedule is not None
            last = runs.get(name)
            started = clock.parse_instant(last.started_at) if last else None
            when = next_run(schedule, started, now)
            if when <= now:
                due.append(name)
            else:
                wait = min(wait, (when - now).total_seconds())
        return due, wait

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                due, wait = self.due(clock.now())
            except Exception as e:
                log.error("scheduler: cannot read the last runs (%s)", type(e).__name__)
                due, wait = [], MAX_SLEEP
            for name in due:
                if self.stop.is_set():
                    return
                if name.startswith(DESTINATION):
                    self._push(name.removeprefix(DESTINATION))
                    continue
                try:
                    started = clock.now()
                    (result,) = sync_sources(self.session, [name], trigger="schedule")
                    if self.on_synced is not None and result.counts.get("rows_loaded", 1):
                        self.on_synced(name, started)  # (a sync that stored nothing: no pass)
                    log.info(
                        "scheduled sync of %s: %d rows in %.2f s",
                        name,
                        result.counts.get("rows_read", 0),
                        result.seconds,
                    )
                except Exception as e:
                    log.error(  # (the error's own words may quote the API: not logged)
                        "scheduled sync of %s failed (%s): `personify status` shows why; the "
                        "next scheduled sync resumes where it stopped",
                        name,
                        type(e).__name__,
                    )
                self.runs += 1
            wait = min(wait, self._check_alerts())
            if not due:
                self.stop.wait(max(0.05, wait))

    def _check_alerts(self) -> float:
        """Evaluate the alerts when due; seconds until the next evaluation."""
        if self.alerts_every is None:
            return MAX_SLEEP
        left = self.alerts_due - time.monotonic()
        if left > 0:
            return left
        from personify.alerts import check_alerts

        try:
            result = check_alerts(self.session)
            if result.failed:
                log.warning("alerts: %d notification(s) failed, retried", len(result.failed))
        except Exception as e:  # logged; the next evaluation tries again
            log.error("alerts could not be evaluated (%s)", type(e).__name__)
        self.alert_checks += 1
        self.alerts_due = time.monotonic() + self.alerts_every
        return self.alerts_every

    def settle_alerts(self) -> None:
        """With no alert configured nothing is evaluated on a schedule, but what is still queued
        for alerts removed from ``personify.yml`` is settled once — ``dropped``, with the
        reason, as ``personify run`` and ``alerts check`` do — instead of staying pending."""
        from personify.alerts import check_alerts

        try:
            dropped = check_alerts(self.session).dropped
        except Exception as e:  # logged; a run or `alerts check` settles them later
            log.error("queued alert notifications could not be settled (%s)", type(e).__name__)
            return
        if dropped:
            log.info("alerts: %d notification(s) of removed alerts dropped", len(dropped))

    def _push(self, name: str) -> None:
        try:
            (result,) = push_destinations(self.session, [name], trigger="schedule")
            if result.error:
                log.error("scheduled push of %s stopped: %s", name, result.error)
            forwarded = "events_sent" in result.counts  # (an events destination)
            log.info(
                "scheduled push of %s: %d %s sent in %.2f s",
                name,
                result.counts.get("events_sent" if forwarded else "rows_sent", 0),
                "events" if forwarded else "rows",
                result.seconds,
            )
        except Exception as e:  # (a push records its own failures; this is anything else)
            log.error("scheduled push of %s failed: %s", name, type(e).__name__)
        self.runs += 1


@contextlib.contextmanager
def scheduled_syncs(session: Session) -> Iterator[Scheduler]:
    """Run the scheduler in a thread for the duration of the block."""
    scheduler = Scheduler(session)
    if scheduler.alerts_every is None:
        scheduler.settle_alerts()
    thread: threading.Thread | None = None
    if scheduler.sources or scheduler.destinations or scheduler.alerts_every is not None:
        thread = threading.Thread(target=scheduler.loop, name="personify-scheduler", daemon=True)
        thread.start()
        names = [s.name for s in scheduler.sources] + [
            run_name(d.name) for d in scheduler.destinations
        ]
        if scheduler.alerts_every is not None:
            names.append(f"alerts every {scheduler.alerts_every:g} s")
        log.info("scheduled syncs: %s", ", ".join(names))
    try:
        yield scheduler
    finally:
        scheduler.stop.set()
        if thread is not None:
            thread.join(60)
