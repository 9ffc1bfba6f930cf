"""``personify serve --role``: what one process does when several share the work.

* ``all`` (default) — everything in one process. Without ``bus:`` tracked events go through the
  group-commit writer into the warehouse (the embedded default); with ``bus: nats://…`` they go
  through the bus and a worker inside the same process stores them.
* ``ingest`` — the HTTP API; tracked events are published to the bus (needs ``bus:``).
* ``worker`` — no HTTP: stores the bus's events in the warehouse (needs ``bus:`` and a warehouse
  several processes can share, PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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


def attach_continuous(stack: contextlib.ExitStack, state: ServerState) -> Applier:
    """Continuous mode: stored events are applied to their customers at once
    (:mod:`personify.realtime.continuous`), the latency on ``/metrics``."""
    from personify.realtime.continuous import Applier

    latency = state.registry.histogram(
        "personify_event_to_profile_seconds",
        "From an event stored to its customer's profile updated (continuous mode).",
        buckets=_LATENCY_BUCKETS,
    )
    applied = state.registry.counter(
        "personify_realtime_applied_events_total", "Events applied to profiles in real time."
    )

    def observe(count: int, seconds: float) -> None:
        latency.observe(seconds)
        applied.inc(count)

    applier = Applier(state.session, on_applied=observe)
    stack.callback(applier.close)
    state.extras[APPLIER] = applier
    r = state.registry
    r._add(
        LiveGauge(
            "personify_realtime_queue_depth",
            "Stored events waiting to be applied to profiles (continuous mode).",
            lambda: applier.depth,
        )
    )
    project = state.session.project
    cache = profile_cache(state.session.warehouse, project)
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
    every = project.config.recompute
    if every:
        stack.enter_context(_recompute_every(state, duration_seconds(every)))
    return applier


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
            drifted.replace(values)

    thread = threading.Thread(target=loop, name="personify-recompute", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def attach_bus(stack: contextlib.ExitStack, state: ServerState, role: str) -> None:
    """With ``bus:``: the tracking routes publish to it; ``all`` also consumes it here."""
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
        consumer = start_worker(state.session.warehouse, settings, state.extras.get(APPLIER))
        stack.callback(consumer.close)
    log.info("tracked events go through the bus (stream %s)", settings.stream)


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
    consumer = start_worker(session.warehouse, settings, applier)
    stack.callback(consumer.close)
    log.info("worker consuming stream %s into the %s warehouse", settings.stream, "shared")
    threading.Event().wait()  # until a signal raises Stopped
