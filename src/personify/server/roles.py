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
from pathlib import Path

from personify.config import Project, load_project
from personify.errors import ConfigError
from personify.server.state import ServerState
from personify.warehouse.base import backend_for

log = logging.getLogger("personify.server")

ROLES = ("all", "ingest", "worker")
BUS_WRITER = "realtime.bus_writer"
"""``ServerState.extras`` key: the tracking routes write through this instead of the group
commit (see :mod:`personify.server.tracking_state`)."""


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
        consumer = start_worker(state.session.warehouse, settings)
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
    consumer = start_worker(session.warehouse, settings)
    stack.callback(consumer.close)
    log.info("worker consuming stream %s into the %s warehouse", settings.stream, "shared")
    threading.Event().wait()  # until a signal raises Stopped
