"""Kubernetes-style probes: ``GET /livez`` (the process answers: no I/O at all) and ``GET /readyz``
(it can serve: the warehouse answers, its schema is the one this Personify needs, the message
bus — with ``bus:`` — takes events, the tracking plans check events), 503 with the reasons
otherwise.

``/healthz`` (:mod:`~personify.server.ops`) stays as it was for the scripts and monitors that use
it. A liveness probe must not depend on the warehouse — a PostgreSQL restart would otherwise get
every healthy server killed and restarted — while a readiness probe must, so that traffic goes to
the servers that can store it.

Readiness checks run on one thread of their own, one at a time: a probe that arrives while a
check runs waits for that check instead of starting another, and gives up after
:data:`READY_TIMEOUT` seconds (503: the warehouse did not answer in time). A warehouse that hangs
therefore holds one thread, not one per probe. That thread keeps its warehouse connection (one
PostgreSQL connection for the server's life), so a probe costs two small queries, not a connect.
With ``bus:`` (``serve --role ingest``, or ``all`` with a bus) the same thread then asks the
bus: the server's own NATS connection is up and JetStream answers for the stream within
:data:`BUS_TIMEOUT` seconds — an ingest process whose bus is down would answer every tracking
request 503.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

import personify
from personify.server.openapi import Content, Operation, operation
from personify.server.responses import ErrorDetail, JSONResponse
from personify.server.roles import BUS_WRITER
from personify.server.state import ServerState, state_of
from personify.warehouse.migrations import MIGRATIONS, current_version

READY_TIMEOUT: Final = 4.0
"""Seconds a readiness check may take before ``/readyz`` answers 503 (set the probe's
``timeoutSeconds`` above it)."""
BUS_TIMEOUT: Final = 2.0
"""Seconds the bus may take to answer for its stream (within :data:`READY_TIMEOUT`)."""
_PROBER: Final = "probes.prober"


class Liveness(msgspec.Struct, frozen=True):
    """The process answers."""

    status: str
    """Always ``alive``."""
    version: str
    """Personify version."""
    uptime_seconds: float
    """Seconds since the server started."""


class Check(msgspec.Struct, frozen=True):
    """One readiness condition."""

    name: str
    """``warehouse`` (it answers), ``schema`` (its migrations are applied), ``bus`` (with
    ``bus:``: connected, and JetStream answers for the stream) or ``tracking_plan`` (every
    tracking-plan file can check its events)."""
    ok: bool
    """Whether it holds."""
    detail: str
    """What was found; what to do when it does not hold. Never personal data."""


class Readiness(msgspec.Struct, frozen=True, omit_defaults=True):
    """Whether this server can serve, and why not."""

    status: str
    """``ready`` (200), ``not_ready`` (503) or ``shutting_down`` (503: SIGTERM arrived, the
    server drains; no check is run)."""
    checks: list[Check]
    """Each condition, in order (``schema`` is left out while the warehouse does not answer;
    none while shutting down)."""
    problems: list[str]
    """What needs fixing without stopping this server from serving (a tracking-plan file broken
    by a live edit whose last good version stays in use)."""
    error: ErrorDetail | None = None
    """On 503 only: ``not_ready``, with the failed checks' details, or ``shutting_down`` — the
    error shape every route answers with."""


class _Prober:
    """Runs the readiness check on a daemon thread of its own, one check at a time."""

    def __init__(self, check: Callable[[], list[Check]]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Future[list[Check]]] = queue.SimpleQueue()
        self._current: Future[list[Check]] | None = None
        self._thread: threading.Thread | None = None

    def submit(self) -> Future[list[Check]]:
        """The check running now, or a new one."""
        with self._lock:
            if self._current is not None and not self._current.done():
                return self._current
            future: Future[list[Check]] = Future()
            self._current = future
            self._queue.put(future)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="personify-readyz", daemon=True
                )
                self._thread.start()
            return future

    def _run(self) -> None:
        while True:
            future = self._queue.get()
            try:
                future.set_result(self._check())
            except BaseException as e:  # (a bug in a check: answered as a failed probe)
                future.set_exception(e)


class WarehouseDown(Exception):
    """The warehouse did not answer; the message says why (never personal data)."""


def warehouse_version(state: ServerState) -> int:
    """The warehouse's schema version, read now — the one warehouse check of ``/healthz`` and
    ``/readyz`` (and the ``personify_up`` gauge: 1 when it answered, 0 when not). Raises
    :class:`WarehouseDown` when it does not answer."""
    try:
        version = current_version(state.session.warehouse)
    except Exception as e:
        state.up.set(0)
        raise WarehouseDown(_unreachable(e)) from None
    state.up.set(1)
    return version


def schema_behind(version: int) -> str | None:
    """What to do when ``version`` lacks migrations this Personify needs; None when it has
    them all."""
    latest = max(m.version for m in MIGRATIONS)
    if version >= latest:
        return None
    return (
        f"the warehouse is at schema version {version}, this Personify needs {latest}: "
        "restart `personify serve`, which applies the missing migrations"
    )


def _warehouse_checks(state: ServerState) -> list[Check]:
    """``warehouse`` and, when it answers, ``schema`` (on the prober's thread)."""
    try:
        version = warehouse_version(state)
    except WarehouseDown as e:
        return [Check("warehouse", False, str(e))]
    answers = Check("warehouse", True, f"{state.session.warehouse.scheme} answers")
    behind = schema_behind(version)
    if behind is None:
        return [answers, Check("schema", True, f"schema version {version}")]
    return [answers, Check("schema", False, behind)]


def _bus_check(state: ServerState) -> list[Check]:
    """``bus`` when the tracking routes write to one (on the prober's thread); none without."""
    writer = state.extras.get(BUS_WRITER)
    if writer is None:
        return []
    try:
        return [Check("bus", True, writer.publisher.check(BUS_TIMEOUT))]
    except Exception as e:  # ServiceUnavailable, or a bug: a failed check either way
        return [Check("bus", False, str(e)[:300])]


def _checks(state: ServerState) -> list[Check]:
    return [*_warehouse_checks(state), *_bus_check(state)]


def _plan_check(state: ServerState) -> tuple[Check, list[str]]:
    """``tracking_plan`` — failed by a file whose events are quarantined — and the files broken
    by a live edit whose last good version stays in use (problems, not failures)."""
    from personify.server.tracking_state import plans_of

    failed: list[str] = []
    kept: list[str] = []
    for name, cache in plans_of(state).items():
        for unreadable in cache.problems() if cache is not None else ():
            text = f"source {name}: tracking plan: {unreadable}; {unreadable.consequence}"
            (kept if unreadable.kept else failed).append(text)
    if failed:
        return Check("tracking_plan", False, "; ".join(failed)), kept
    return Check("tracking_plan", True, "every tracking-plan file checks its events"), kept


def _unreachable(e: BaseException) -> str:
    return f"the warehouse does not answer ({type(e).__name__}: {str(e)[:200]})"


def _prober(state: ServerState) -> _Prober:
    found = state.extras.get(_PROBER)
    if found is None:
        found = state.extras.setdefault(_PROBER, _Prober(lambda: _checks(state)))
    assert isinstance(found, _Prober)
    return found


@operation(
    Operation(
        summary="Liveness: the process answers",
        description="Always 200 while the server process runs and its event loop answers; no "
        "warehouse, file or network I/O. For a Kubernetes `livenessProbe`: a warehouse outage "
        "does not get the server restarted (see `/readyz`).",
        tags=("operations",),
        responses={200: Content("The process is alive.", Liveness)},
    )
)
async def livez(request: Request) -> Response:
    """The process is alive: answered from memory."""
    state = state_of(request)
    return JSONResponse(Liveness("alive", personify.__version__, round(state.uptime_seconds, 3)))


@operation(
    Operation(
        summary="Readiness: the server can serve",
        description="200 when the warehouse answers (within "
        f"{READY_TIMEOUT:g} s), its schema has every migration this version needs, the "
        "message bus (with `bus:`) is connected and answers for its stream, and every "
        "tracking-plan file can check its events; 503 with each failed check and an error "
        "body (`not_ready`) otherwise, and 503 `shutting_down` from the moment the server "
        "got SIGTERM while it drains (`serve --drain`). For a Kubernetes `readinessProbe`: "
        "traffic goes to the servers that can store it, and a rollout whose new servers "
        "cannot stops.",
        tags=("operations",),
        responses={
            200: Content("Ready to serve.", Readiness),
            503: Content("Not ready: see `checks` and `error`.", Readiness),
        },
    )
)
async def readyz(request: Request) -> Response:
    """Ready: the warehouse answers at the schema version this Personify needs, the bus (if
    any) takes events, and the tracking plans check events."""
    state = state_of(request)
    if state.shutting_down:  # answered from memory: the load balancer takes it out at once
        message = (
            "the server is stopping (SIGTERM): it drains — finishes its in-flight requests "
            "and passes — then exits"
        )
        error = ErrorDetail("shutting_down", message)
        return JSONResponse(Readiness("shutting_down", [], [], error), status_code=503)
    future = _prober(state).submit()
    try:
        checks = await run_in_threadpool(future.result, READY_TIMEOUT)
    except FutureTimeout:
        state.up.set(0)
        message = f"the warehouse did not answer within {READY_TIMEOUT:g} s"
        checks = [Check("warehouse", False, message)]
    except Exception as e:  # (a bug in a check: a failed probe, not a 500)
        checks = [Check("warehouse", False, _unreachable(e))]
    plan, problems = await run_in_threadpool(_plan_check, state)
    checks = [*checks, plan]
    failed = [c for c in checks if not c.ok]
    if not failed:
        return JSONResponse(Readiness("ready", checks, problems))
    error = ErrorDetail("not_ready", "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return JSONResponse(Readiness("not_ready", checks, problems, error), status_code=503)
