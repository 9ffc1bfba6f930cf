"""``personify serve``."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Annotated

import typer

from personify.cli.app import ProjectOpt, app


@app.command("serve", rich_help_panel="Operate")
def serve_command(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: pick a free one).")
    ] = 8787,
    log_level: Annotated[
        str,
        typer.Option("--log-level", help="debug, info, warning or error (logs go to stderr)."),
    ] = "info",
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="all (default): everything in this process; with `bus: nats://…` in "
            "personify.yml, ingest: the HTTP API publishing tracked events and verified "
            "webhook deliveries to the bus (no continuous mode: the workers do it), worker: "
            "store the bus's events and deliveries in the warehouse and apply them (no HTTP). "
            "Run N of each on one PostgreSQL warehouse.",
        ),
    ] = "all",
    ingest_processes: Annotated[
        int | None,
        typer.Option(
            "--ingest-processes",
            min=0,
            help="Helper processes that decode and validate tracking batches, so this process "
            "keeps its interpreter lock for storing them (default: one per core beyond the "
            "first, at most 4 — one on a 2-core machine; 0: none).",
        ),
    ] = None,
    drain: Annotated[
        float,
        typer.Option(
            "--drain",
            min=0,
            metavar="SECONDS",
            help="After SIGTERM, go on serving this long with /readyz answering 503 "
            "shutting_down (no new scheduled sync), then stop accepting, finish in-flight "
            "requests and passes, and exit — set it to the time your load balancer takes to "
            "drop a server (Kubernetes: a few seconds). Default 0: stop at once; SIGINT and a "
            "second SIGTERM always do.",
        ),
    ] = 0.0,
    project: ProjectOpt = Path("."),
) -> None:
    """Long-running: the HTTP API, the marketer console, scheduled syncs, alerts and
    continuous mode.

    The HTTP API — tracking (/v1/…), /collect.js, webhooks (/webhooks/NAME),
    profiles, health (/healthz; probes: /livez never touches the warehouse, /readyz is 503 with
    its reasons while the warehouse does not answer, its schema is behind or a tracking-plan file
    quarantines events), metrics, the marketer console (/console: a read-only web UI — overview,
    segments and why someone is in one, profile search, email previews with the send gate's
    verdict — for tokens with the `console` scope) — the sources' scheduled syncs (`schedule:` in
    personify.yml) and the alerts, evaluated every `alerts_every` (their notifications sent once
    even when a `personify run` evaluates at the same moment).

    Continuous mode: every stored event, webhook delivery and synced record updates its
    customer's profile, real-time segments, tags and journey entries within about a second; once
    a second, due journey steps advance and due emails are sent (no `personify run` needed).
    Restarted on the same host and port after a crash, it first applies what the dead process
    had stored but not yet applied.

    On a DuckDB project the server owns the warehouse file, and every other `personify` command
    on the project runs through it (set PERSONIFY_NO_FORWARD=1 to opt out). It writes
    .personify/server.json while it runs; SIGINT/SIGTERM stop it cleanly (SIGTERM after
    --drain seconds of serving while /readyz says shutting_down). A second `serve` on the same
    project is refused.
    """
    from personify.server.runner import serve

    level = log_level.lower()
    if level not in {"debug", "info", "warning", "error", "critical"}:
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    if role not in {"all", "ingest", "worker"}:
        raise typer.BadParameter(f"unknown role {role!r} (all, ingest, worker)", param_hint="role")
    if not math.isfinite(drain) or drain < 0:  # (click's min=0 lets nan and inf through)
        raise typer.BadParameter(
            f"{drain!r} is not a number of seconds (give 0 or more, e.g. --drain 10)",
            param_hint="--drain",
        )
    if drain > threading.TIMEOUT_MAX:  # the drain's timer cannot wait that long: it would die
        raise typer.BadParameter(  # and the drain never end
            f"{drain:g} seconds is longer than this platform can wait "
            f"({threading.TIMEOUT_MAX:g} s at most; a few seconds is usual, e.g. --drain 10)",
            param_hint="--drain",
        )
    serve(
        project,
        host=host,
        port=port,
        log_level=level,
        role=role,
        ingest_processes=ingest_processes,
        drain=drain,
    )
