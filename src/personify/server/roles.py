"""``personify serve --role``: what one process does when several share the work.

* ``all`` (default) — everything in one process. Without ``bus:`` tracked events go through the
  group-commit writer into the warehouse (the embedded default); with ``bus: nats://…`` they go
  through the bus and a worker inside the same process stores them.
* ``ingest`` — the HTTP API; tracked events and verified webhook deliveries are published to
  the bus (needs ``bus:``).
* ``worker`` — no HTTP: stores the bus's events and webhook deliveries in the warehouse (needs
  ``bus:`` and a warehouse several processes can share, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personify import clock
from personify.config import Project, duration_seconds, load_project
from personify.errors import ConfigError
from personify.realtime import profile_cache
from personify.server.metrics import Gauge
from personify.server.state import ServerState
from personify.warehouse.base import backend_for

if TYPE_CHECKING:
    from personify.realtime.continuous import Applier

log = logging.getLogger("personify.server")

ROLES = ("all", "ingest", "worker")
BUS_WRITER = "realtime.bus_writer"
"""``ServerState.extras`` key: the tracking routes write through this instead of the group
commit (see :mod:`personify.server.tracking_state`)."""
APPLIER = "realtime.applier"
"""``ServerState.extras`` key: the continuous-mode applier (:mod:`personify.realtime`)."""


def check_role(project: Project, role: str) -> None:
    """Refuse a role the project cannot run (no bus, a single-process warehouse)."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", hint="use --role all, ingest or worker")
    if role == "all":
        return
    if not project.config.bus:
        raise ConfigError(
            f"--role {role} needs a message bus",
            key="bus",
            hint="set bus: nats://127.0.0.1:4222 in personify.yml (or use --role all)",
        )
    if backend_for(project.config.warehouse).capabilities.single_process:
        raise ConfigError(
            f"--role {role}: a DuckDB warehouse belongs to one process",
            key="warehouse",
            hint="use PostgreSQL (warehouse: postgresql://…) to run several processes",
        )


LAG_TTL = 30.0
"""Seconds a scrape's per-source lags are reused (reading them scans the events' times)."""
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LiveGauge(Gauge):
    """A gauge read when ``/metrics`` is scraped."""

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        super().__init__(name, help)
        self.read = read

    def samples(self) -> list[str]:
        with contextlib.suppress(Exception):  # a metric never fails the scrape
            self.set(self.read())
        return super().samples()


def attach_continuous(
    stack: contextlib.ExitStack, state: ServerState, role: str = "all", process: str | None = None
) -> Applier | None:
    """Continuous mode: stored events, webhook deliveries and synced records are applied to
    their customers at once (:mod:`personify.realtime.continuous`); freshness on ``/metrics``.

    ``role="ingest"`` runs no applier (the workers do: the ingest path stays cheap); the cache
    and per-source lag gauges are there on every role. With ``process`` (a serving process's
    name, :func:`personify.realtime.recovery.process_name`) the applier keeps a recovery mark,
    and first catches up with what a crashed predecessor left unapplied."""
    from personify.realtime.continuous import Applier
    from personify.realtime.stats import LiveStats, register

    project = state.session.project
    cache = profile_cache(state.session.warehouse, project)
    r = state.registry
    reads: tuple[tuple[str, str, Callable[[], float]], ...] = (
        (
            "personify_profile_cache_hit_ratio",
            "Profile cache hits / lookups.",
            lambda: cache.hit_ratio,
        ),
        ("personify_profile_cache_hits", "Profile cache hits since start.", lambda: cache.hits),
        (
            "personify_profile_cache_misses",
            "Profile cache misses since start.",
            lambda: cache.misses,
        ),
    )
    for name, help, read in reads:
        r._add(LiveGauge(name, help, read))
    r._add(
        LiveLabelledGauge(
            "personify_source_lag_seconds",
            "Seconds since each source last delivered data (tracking: last event received; "
            "webhook: last delivery; REST/file: last sync), re-read at most every 30 s.",
            ("source",),
            _source_lags(state),
        )
    )
    stats = LiveStats(cache=cache)
    stack.callback(register(stats))
    if role == "ingest":
        return None
    latency = r.histogram(
        "personify_event_to_profile_seconds",
        "From an input stored to its customer's profile updated (continuous mode).",
        buckets=_LATENCY_BUCKETS,
    )
    applied = r.counter(
        "personify_realtime_applied_events_total",
        "Inputs (events, webhook rows, synced records) applied to profiles in real time.",
    )
    reactions = r.counter(
        "personify_realtime_reactions_total",
        "Real-time audience and journey changes, by kind (segment_entered, segment_exited, "
        "tag_added, tag_removed, journey_entered).",
        ("kind",),
    )
    segment_failures = r.counter(
        "personify_realtime_segment_failures_total",
        "Real-time refreshes of a segment the warehouse refused (it kept its memberships; "
        "personify status shows why), by segment.",
        ("segment",),
    )

    def observe(count: int, seconds: float) -> None:
        latency.observe(seconds)
        applied.inc(count)
        stats.observe(count, seconds)

    def reacted(done: Any) -> None:
        for kind, n in (
            ("segment_entered", done.entered),
            ("segment_exited", done.exited),
            ("tag_added", done.tags_added),
            ("tag_removed", done.tags_removed),
            ("journey_entered", sum(done.journeys_entered.values())),
        ):
            if n:
                reactions.inc(n, kind=kind)
        for segment in done.segments_failed:
            segment_failures.inc(segment=segment)

    marker, since = None, None
    if process is not None:
        from functools import partial

        from personify.realtime import recovery

        since = recovery.recover(state.session.warehouse, process)
        marker = partial(recovery.mark, state.session.warehouse, process)
        # the first mark now: what this process takes over (or its start) is written down
        # before anything is received
        marker(since or clock.now() - recovery.MARGIN)
    applier = Applier(state.session, on_applied=observe, on_reacted=reacted, marker=marker)
    stack.callback(applier.close)
    if since is not None:
        log.info("continuous mode: catching up with what was received since %s", since)
        applier.submit_since(since)
    stats.applier = applier
    state.extras[APPLIER] = applier
    r._add(
        LiveGauge(
            "personify_realtime_queue_depth",
            "Inputs waiting to be applied to profiles (continuous mode, in-process queue).",
            lambda: applier.depth,
        )
    )
    for name, help, read in (
        (
            "personify_realtime_retried",
            "Submissions queued for another pass after theirs failed, since start.",
            lambda: applier.retried,
        ),
        (
            "personify_realtime_given_up",
            "Submissions whose last retry failed too (left to the batch path), since start.",
            lambda: applier.given_up,
        ),
    ):
        r._add(LiveGauge(name, help, read))
    every = project.config.recompute
    if every:
        stack.enter_context(_recompute_every(state, duration_seconds(every)))
    return applier


class LiveLabelledGauge(Gauge):
    """A labelled gauge whose samples are read when ``/metrics`` is scraped."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...],
        read: Callable[[], dict[tuple[str, ...], float]],
    ) -> None:
        super().__init__(name, help, labels)
        self.read = read

    def samples(self) -> list[str]:
        with contextlib.suppress(Exception):  # a metric never fails the scrape
            self.replace(self.read())
        return super().samples()


def _source_lags(state: ServerState) -> Callable[[], dict[tuple[str, ...], float]]:
    from personify.status import source_freshness

    cached: list[Any] = [-LAG_TTL, {}]

    def read() -> dict[tuple[str, ...], float]:
        if time.monotonic() - cached[0] >= LAG_TTL:
            fresh = source_freshness(state.session)
            cached[1] = {
                (name,): float(f["lag_seconds"])
                for name, f in fresh.items()
                if f["lag_seconds"] is not None
            }
            cached[0] = time.monotonic()
        return dict(cached[1])

    return read


@contextlib.contextmanager
def _recompute_every(state: ServerState, seconds: float) -> Iterator[None]:
    """``recompute:`` — the batch recompute on a timer, its drift on ``/metrics``."""
    from personify.realtime.drift import recompute

    drifted = state.registry.gauge(
        "personify_realtime_drift",
        "Customers that differed at the last batch recompute (added, removed, per column).",
        ("kind",),
    )
    runs = state.registry.counter(
        "personify_realtime_recomputes_total", "Batch recomputes by outcome.", ("outcome",)
    )
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                with state.session.warehouse.all_threads():  # a batch job: every core
                    drift = recompute(state.session)
            except Exception as e:  # the next run tries again
                runs.inc(outcome="error")
                log.warning("batch recompute failed (%s)", type(e).__name__)
                continue
            runs.inc(outcome="drift" if drift.drifted else "same")
            values: dict[tuple[str, ...], float] = {
                ("added",): float(drift.added),
                ("removed",): float(drift.removed),
            }
            values |= {(c,): float(n) for c, n in drift.changed.items()}
            values |= {(f"segment:{k}",): float(n) for k, n in drift.segments.items()}
            values |= {(f"tag:{k}",): float(n) for k, n in drift.tags.items()}
            drifted.replace(values)

    thread = threading.Thread(target=loop, name="personify-recompute", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def attach_bus(stack: contextlib.ExitStack, state: ServerState, role: str) -> None:
    """With ``bus:``: the tracking and webhook routes publish to it; ``all`` also consumes it
    here."""
    project = state.session.project
    if not project.config.bus:
        return
    from personify.realtime.bus import parse_bus_url
    from personify.realtime.worker import BusWriter, start_worker

    settings = parse_bus_url(project.config.bus, project.config.name)
    writer = BusWriter(settings)
    stack.callback(writer.close)
    state.extras[BUS_WRITER] = writer
    if role == "all":
        consumer = start_worker(
            state.session.warehouse, settings, state.extras.get(APPLIER), state.session
        )
        stack.callback(consumer.close)
    pending = _every(2.0, writer.publisher.depth)
    state.registry._add(
        LiveGauge(
            "personify_bus_pending",
            "Events on the bus not yet stored by a worker (JetStream consumer `workers`: "
            "num_pending + num_ack_pending), re-read at most every 2 s.",
            pending,
        )
    )
    from personify.realtime.stats import live

    for stats in live():
        stats.bus_depth = pending
    log.info("tracked events go through the bus (stream %s)", settings.stream)


def _every(seconds: float, read: Callable[[], int]) -> Callable[[], float]:
    """``read``, called at most every ``seconds`` (its last value in between)."""
    cached: list[float] = [-seconds, 0.0]

    def get() -> float:
        if time.monotonic() - cached[0] >= seconds:
            cached[1] = float(read())
            cached[0] = time.monotonic()
        return cached[1]

    return get


def run_worker(stack: contextlib.ExitStack, directory: str | Path) -> None:
    """``--role worker``: consume the bus into the warehouse until SIGINT/SIGTERM."""
    from personify.realtime.bus import parse_bus_url
    from personify.realtime.worker import start_worker
    from personify.session import Session

    project = load_project(directory)
    check_role(project, "worker")
    session = Session(project)
    stack.callback(session.close)
    settings = parse_bus_url(str(project.config.bus), project.config.name)
    from personify.realtime.continuous import Applier

    applier = Applier(session)
    stack.callback(applier.close)
    consumer = start_worker(session.warehouse, settings, applier, session)
    stack.callback(consumer.close)
    log.info("worker consuming stream %s into the %s warehouse", settings.stream, "shared")
    threading.Event().wait()  # until a signal raises Stopped
