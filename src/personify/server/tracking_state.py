"""What the tracking routes of one app share: keys, plans, the writer, caches, metrics.

Created on the first tracking request (:func:`tracking_of`) and kept in ``ServerState.extras``.
The recent-id cache is then filled, in a background thread, with the ids of the tracking sources'
most recent events, so senders retrying across a restart are answered from memory.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Final

from personify.config import TrackingSource
from personify.ingest.tracking.limits import RateLimiter, RecentIds
from personify.ingest.tracking.plan import Plan, PlanCache
from personify.ingest.tracking.pool import NormalizerPool
from personify.ingest.tracking.writer import GroupWriter
from personify.server.metrics import Counter, Histogram
from personify.server.state import ServerState
from personify.server.tracking_http import KeyRing
from personify.warehouse import Warehouse

log = logging.getLogger("personify.server.tracking")

KEY: Final = "tracking.state"
PLANS: Final = "tracking.plans"
NORMALIZERS: Final = "tracking.normalizers"
"""``ServerState.extras`` key: the :class:`~personify.ingest.tracking.pool.NormalizerPool` that
``personify serve`` starts (none where a test builds the app alone: batches normalize in
process)."""
_ROW_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)
_COMMIT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_lock = threading.Lock()
_plans_lock = threading.Lock()
"""(Another lock: :func:`tracking_of` holds ``_lock`` while it reads the plans.)"""


@dataclass
class Tracking:
    """The tracking API's state in one app."""

    keys: KeyRing
    writer: GroupWriter
    events: Counter
    commit_rows: Histogram
    commit_seconds: Histogram
    plans: dict[str, PlanCache | None]
    recent: RecentIds = field(default_factory=RecentIds)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    pool: NormalizerPool | None = None
    """Helper processes normalizing batches (``personify serve --ingest-processes``)."""
    normalized: Counter | None = None
    """Batches by where they were normalized (with a pool: ``helper`` or ``in_process``)."""
    preloading: threading.Thread | None = None
    """The background fill of ``recent`` from the store (it reads the warehouse: waited for
    before the warehouse may close)."""

    def plan(self, source: TrackingSource) -> Plan | None:
        """The source's current tracking plan (``None`` when it has none)."""
        cache = self.plans.get(source.name)
        return cache.get() if cache is not None else None

    def close(self) -> None:
        """Stop the writer (after the jobs already queued), once the preload is done with the
        warehouse."""
        if self.preloading is not None:
            self.preloading.join(timeout=60)
        self.writer.close()


def plans_of(state: ServerState) -> dict[str, PlanCache | None]:
    """Each tracking source's plan, read once per app (``personify serve`` reads them at start-up,
    so a file that cannot be used is logged then; ``/healthz`` reports it)."""
    found = state.extras.get(PLANS)
    if found is None:
        with _plans_lock:
            found = state.extras.get(PLANS)
            if found is None:
                project = state.session.project
                found = state.extras[PLANS] = {
                    s.name: PlanCache(project.path(s.tracking_plan)) if s.tracking_plan else None
                    for s in project.config.sources
                    if isinstance(s, TrackingSource)
                }
    assert isinstance(found, dict)
    return found


def plan_problems(state: ServerState) -> list[str]:
    """Each tracking-plan file that cannot be used, with what is wrong and what becomes of its
    events (``source web: tracking-plan/Signed Up.json: not JSON at line 1, column 2: …``)."""
    return [
        f"source {name}: tracking plan: {broken}; {broken.consequence}"
        for name, cache in plans_of(state).items()
        if cache is not None
        for broken in cache.problems()
    ]


def _create(state: ServerState) -> Tracking:
    project = state.session.project
    sources = [s for s in project.config.sources if isinstance(s, TrackingSource)]
    plans = plans_of(state)
    warehouse = state.session.warehouse  # may fail (503): before registering any metric
    r = state.registry
    events = r.counter(
        "personify_tracking_events_total",
        "Tracking API events by source and outcome (accepted, duplicate, quarantined, rejected).",
        ("source", "outcome"),
    )
    rows = r.histogram(
        "personify_tracking_commit_rows",
        "Events stored per group commit (one transaction for many concurrent requests).",
        buckets=_ROW_BUCKETS,
    )
    seconds = r.histogram(
        "personify_tracking_commit_seconds",
        "Duration of each group commit, fsync included.",
        buckets=_COMMIT_BUCKETS,
    )

    def observe(count: int, took: float) -> None:
        rows.observe(count)
        seconds.observe(took)

    bus_writer = state.extras.get("realtime.bus_writer")  # --role ingest|all with bus:
    writer = bus_writer or GroupWriter(warehouse, on_commit=observe)
    applier = state.extras.get("realtime.applier")  # continuous mode (personify serve)
    if applier is not None and bus_writer is None:
        from personify.realtime.continuous import ApplyingWriter

        writer = ApplyingWriter(writer, applier)
    tracking = Tracking(KeyRing(sources), writer, events, rows, seconds, plans)
    tracking.pool = state.extras.get(NORMALIZERS)
    if tracking.pool is not None:
        tracking.normalized = r.counter(
            "personify_tracking_batches_normalized_total",
            "Tracking batches by where their events were decoded and validated: helper (a "
            "normalizer process, serve --ingest-processes) or in_process (small, or no helper "
            "ready).",
            ("where",),
        )
    names = [s.name for s in sources]
    tracking.preloading = threading.Thread(
        target=_preload, args=(tracking, warehouse, names), name="personify-recent-ids", daemon=True
    )
    tracking.preloading.start()
    return tracking


def _preload(tracking: Tracking, warehouse: Warehouse, sources: list[str]) -> None:
    try:
        n = tracking.recent.preload_from(warehouse, sources)
    except Exception as e:  # only a cache: the store deduplicates all the same
        log.warning("recent messageIds not preloaded (%s)", type(e).__name__)
        return
    log.debug("preloaded %d recent messageIds", n)


def tracking_of(state: ServerState) -> Tracking:
    """The app's tracking state, created on first use (opens the warehouse and the plans)."""
    found = state.extras.get(KEY)
    if found is None:
        with _lock:
            found = state.extras.get(KEY)
            if found is None:
                found = state.extras[KEY] = _create(state)
    assert isinstance(found, Tracking)
    return found
