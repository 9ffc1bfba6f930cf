"""What every route may use: the session, the metrics, the server's identity."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.requests import Request

from personify.config import Secret
from personify.server.metrics import Counter, Gauge, Histogram, Registry
from personify.session import Session


@dataclass
class ServerState:
    """Shared by the routes of one app (``request.app.state.personify``)."""

    session: Session
    """The project and its open warehouse (shared between threads)."""
    instance: str
    """Random id of this server process (not a secret)."""
    control_token: Secret | None = None
    """Bearer token of the control channel; ``None``: no control channel."""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    registry: Registry = field(default_factory=Registry)
    command_lock: anyio.Lock = field(default_factory=anyio.Lock)
    """One forwarded command at a time."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Per-app state of route modules (caches …), keyed ``"module.name"``."""
    shutting_down: bool = False
    """Set when SIGTERM/SIGINT arrived: ``/readyz`` answers 503 ``shutting_down`` while the
    server drains (see :mod:`personify.server.runner`)."""

    def __post_init__(self) -> None:
        r = self.registry
        self.up: Gauge = r.gauge("personify_up", "1 when the warehouse answers, else 0.")
        self.build_info: Gauge = r.gauge(
            "personify_build_info",
            "Build information (always 1).",
            ("version", "python", "warehouse"),
        )
        self.start_time: Gauge = r.gauge(
            "personify_start_time_seconds", "When the server started (Unix time)."
        )
        self.uptime: Gauge = r.gauge(
            "personify_uptime_seconds", "Seconds since the server started."
        )
        self.schema_version: Gauge = r.gauge(
            "personify_schema_version", "Version of the warehouse schema (migrations applied)."
        )
        self.table_rows: Gauge = r.gauge(
            "personify_table_rows", "Rows per warehouse table.", ("table",)
        )
        self.forwarded: Counter = r.counter(
            "personify_forwarded_commands_total",
            "CLI commands run through this server, by command and outcome (ok, error).",
            ("command", "outcome"),
        )
        self.forwarded_seconds: Counter = r.counter(
            "personify_forwarded_command_seconds_total",
            "Seconds spent running forwarded CLI commands, by command.",
            ("command",),
        )
        self.requests: Counter = r.counter(
            "personify_http_requests_total",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
        )
        self.latency: Histogram = r.histogram(
            "personify_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ("route",),
        )
        self.start_time.set(self.started_at.timestamp())

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        """A route module's counter ``name``, registered on first use (the registry refuses a
        name twice, so the state keeps it)."""
        key = f"counter:{name}"
        found = self.extras.get(key)
        if found is None:
            with _REGISTERING:
                found = self.extras.get(key)
                if found is None:
                    found = self.extras[key] = self.registry.counter(name, help, labels)
        assert isinstance(found, Counter)
        return found


_REGISTERING = threading.Lock()


def state_of(request: Request) -> ServerState:
    """The :class:`ServerState` of the app serving ``request``."""
    state: ServerState = request.app.state.personify
    return state
