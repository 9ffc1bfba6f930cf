"""Operations routes: ``GET /healthz``, ``GET /livez``, ``GET /readyz`` (the probes of
:mod:`~personify.server.probes`), ``GET /metrics``, ``GET /openapi.json``."""

from __future__ import annotations

import logging
import platform
import threading
import time
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import personify
from personify.server.metrics import CONTENT_TYPE
from personify.server.openapi import ERROR, Content, Operation, openapi_document, operation
from personify.server.probes import WarehouseDown, livez, readyz, schema_behind, warehouse_version
from personify.server.responses import JSONResponse, error_response
from personify.server.state import ServerState, state_of

log = logging.getLogger("personify.server")

ROW_COUNT_TTL = 10.0
"""Seconds a scrape's table row counts are reused (counting is a scan on some warehouses)."""


class WarehouseHealth(msgspec.Struct, frozen=True):
    """The warehouse as the server sees it."""

    backend: str
    """``duckdb`` or ``postgresql``."""
    reachable: bool
    """Whether it answered a query just now."""
    schema_version: int
    """Migrations applied."""


class Health(msgspec.Struct, frozen=True):
    """A server that serves (one whose warehouse does not answer is 503 with an error body)."""

    status: str
    """``ok``; ``degraded`` when it serves but something needs fixing: see ``problems``."""
    version: str
    """Personify version."""
    project: str
    """Project name."""
    uptime_seconds: float
    """Seconds since the server started."""
    warehouse: WarehouseHealth
    problems: list[str] = msgspec.field(default_factory=list)
    """What needs fixing, for people — a warehouse schema behind this Personify (restart
    ``serve``), a tracking-plan file that cannot be used (its events are quarantined, or its last
    good version stays in use), naming the file and what is wrong."""


def _problems(state: ServerState, version: int) -> list[str]:
    from personify.server.tracking_state import plan_problems

    behind = schema_behind(version)
    return [*([behind] if behind else []), *plan_problems(state)]


@operation(
    Operation(
        summary="Warehouse health (kept for compatibility: probes use `/livez` and `/readyz`)",
        description="200 when the warehouse answers — `status` `degraded` with `problems` "
        "when something needs fixing while the server serves (a schema behind this version, a "
        "tracking-plan file that cannot be used) — and 503 with an error body when it does "
        "not. A Kubernetes liveness probe belongs on `/livez` (no warehouse), a readiness "
        "probe on `/readyz`.",
        tags=("operations",),
        responses={
            200: Content("The server and its warehouse are healthy.", Health),
            503: Content("The warehouse does not answer.", ERROR),
        },
    )
)
async def healthz(request: Request) -> Response:
    """Liveness: does the warehouse answer, and at which schema version; what needs fixing."""
    state = state_of(request)
    try:
        version = await run_in_threadpool(warehouse_version, state)  # (the check /readyz runs)
    except WarehouseDown as e:
        return error_response(503, str(e), code="warehouse_unavailable")
    problems = await run_in_threadpool(_problems, state, version)
    session = state.session
    body = Health(
        status="degraded" if problems else "ok",
        version=personify.__version__,
        project=session.project.config.name,
        uptime_seconds=round(state.uptime_seconds, 3),
        warehouse=WarehouseHealth(session.warehouse.scheme, True, version),
        problems=problems,
    )
    return JSONResponse(body)


class _RowCounts:
    """Table row counts, recounted at most every :data:`ROW_COUNT_TTL` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = -ROW_COUNT_TTL
        self._counts: dict[tuple[str, ...], float] = {}

    def get(self, state: ServerState) -> dict[tuple[str, ...], float]:
        with self._lock:
            if time.monotonic() - self._at >= ROW_COUNT_TTL:
                from personify.status import table_rows  # estimates for big PostgreSQL tables

                rows, _ = table_rows(state.session.warehouse)
                self._counts = {(name,): float(n) for name, n in rows.items()}
                self._at = time.monotonic()
            return self._counts


def _collect(state: ServerState) -> None:
    """Refresh the gauges that are read at scrape time."""
    state.uptime.set(state.uptime_seconds)
    session = state.session
    try:
        wh = session.warehouse
        counts = state.extras.setdefault("ops.row_counts", _RowCounts())
        state.table_rows.replace(counts.get(state))
        state.schema_version.set(warehouse_version(state))
        state.build_info.replace({(personify.__version__, platform.python_version(), wh.scheme): 1})
        _collect_drift(state)
        _collect_alerts(state)
        _collect_forwarding(state)
        state.up.set(1)
    except Exception:
        state.up.set(0)


def _collect_drift(state: ServerState) -> None:
    """Schema drift of the last 24 h (as ``personify status`` lists it), per source, stream
    and change."""
    from personify.quality.drift import change_counts

    gauge = state.extras.get("quality.schema_changes")
    if gauge is None:
        gauge = state.extras["quality.schema_changes"] = state.registry.gauge(
            "personify_schema_changes",
            "Schema drift of the last 24 hours: fields a source's records gained (added), lost "
            "(removed) or retyped (type_changed), per source and stream.",
            ("source", "stream", "change"),
        )
    gauge.replace(change_counts(state.session.warehouse))


def _collect_alerts(state: ServerState) -> None:
    """Each configured alert: 1 while it fires, else 0 (as last evaluated)."""
    alerts = state.session.project.config.alerts
    if not alerts:
        return
    gauge = state.extras.get("alerts.firing")
    if gauge is None:
        gauge = state.extras["alerts.firing"] = state.registry.gauge(
            "personify_alert_firing",
            "1 while an alert (alerts: in personify.yml) fires, else 0, as last evaluated.",
            ("alert", "signal"),
        )
    firing = {
        str(name)
        for (name,) in state.session.warehouse.fetch(
            "SELECT alert FROM alert_state WHERE state = 'firing'"
        )
    }
    gauge.replace({(a.name, a.when): 1.0 if a.name in firing else 0.0 for a in alerts})


def _collect_forwarding(state: ServerState) -> None:
    """Each ``kind: events`` destination's lag — the age in seconds of its oldest event not yet
    forwarded, 0 when none waits: ``personify status``'s figure — re-read at most every
    :data:`ROW_COUNT_TTL` seconds (it reads the waiting events' times). A destination whose
    figure cannot be read drops out of the gauge until it can (the others still show)."""
    from personify import clock
    from personify.config import EventsDestination
    from personify.destinations import events

    wanted = [
        d for d in state.session.project.config.destinations if isinstance(d, EventsDestination)
    ]
    if not wanted:
        return
    gauge = state.extras.get("destinations.forwarding_lag")
    if gauge is None:
        gauge = state.extras["destinations.forwarding_lag"] = state.registry.gauge(
            "personify_forwarding_lag_seconds",
            "Per events destination (kind: events): seconds since its oldest event not yet "
            "forwarded was stored, 0 when none waits (personify status's lag), re-read at most "
            "every 10 s.",
            ("destination",),
        )
    at = state.extras.get("destinations.forwarding_lag_at", -ROW_COUNT_TTL)
    if time.monotonic() - at < ROW_COUNT_TTL:
        return
    now = clock.now()
    lags: dict[tuple[str, ...], float] = {}
    for d in wanted:
        try:
            lags[(d.name,)] = float(events.waiting(state.session.warehouse, d, now)["lag_seconds"])
        except Exception as e:  # a metric never fails the scrape
            log.warning(
                "forwarding lag of destination %s unreadable (%s)", d.name, type(e).__name__
            )
    gauge.replace(lags)
    state.extras["destinations.forwarding_lag_at"] = time.monotonic()


@operation(
    Operation(
        summary="Prometheus metrics",
        description="Text exposition format 0.0.4: `personify_up`, `personify_build_info`, "
        "`personify_table_rows`, `personify_schema_changes`, `personify_alert_firing`, "
        "`personify_forwarding_lag_seconds`, uptime, "
        "forwarded commands, HTTP requests and latency.",
        tags=("operations",),
        responses={
            200: Content("The metrics.", {"type": "string"}, media_type="text/plain"),
        },
    )
)
async def metrics(request: Request) -> Response:
    """Every metric of this server, for Prometheus to scrape."""
    state = state_of(request)
    await run_in_threadpool(_collect, state)
    return Response(state.registry.render(), media_type=CONTENT_TYPE)


@operation(
    Operation(
        summary="This API's OpenAPI 3.1 document",
        tags=("operations",),
        responses={200: Content("The OpenAPI document.", {"type": "object"})},
    )
)
async def openapi(request: Request) -> Response:
    """The OpenAPI document of the routes this server has."""
    document: dict[str, Any] = openapi_document(
        request.app.routes,
        title="Personify",
        version=personify.__version__,
        description="Warehouse-native customer data platform: the HTTP API of `personify serve`.",
    )
    return JSONResponse(document)


def routes() -> list[BaseRoute]:
    """The operations routes."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
