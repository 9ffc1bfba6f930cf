"""The ``personify serve`` process: claim the project, bind, open the warehouse, publish, serve,
and clean up on SIGINT/SIGTERM.

Order matters:

1. on a single-process warehouse (DuckDB), take the project's server lock — a second ``serve``
   stops here, naming the running one;
2. bind and listen on the socket (``--port 0`` picks a free port) — a port in use fails fast;
3. open and migrate the warehouse once; it stays open for the server's life;
4. publish ``server.json`` (pid, host, port, token, started_at; mode 0600); from here other
   commands forward (connections made before uvicorn accepts wait in the listen backlog);
5. serve with uvicorn until a signal. From the signal on ``/readyz`` answers 503
   ``shutting_down`` and no scheduled sync starts; on SIGTERM with ``drain`` seconds (``serve
   --drain``, for Kubernetes: the time its endpoints take to drop this pod) the server goes on
   serving that long — requests routed to it meanwhile are answered, not refused — then (at
   once on SIGINT, or on a second signal) it stops accepting, finishes in-flight requests (a
   running forwarded command included; another Ctrl-C forces), and returns;
6. finish the queued continuous-mode passes, record the queued open/click hits, withdraw
   ``server.json``, close the warehouse, release the lock, close the socket.

Signals are turned into :class:`Stopped` (a ``BaseException``): before and after uvicorn runs by
:func:`_signals_stop`'s handlers, while it runs by :func:`serve_until_signalled`'s own (uvicorn
installs none: no private part of it is used), raised once it returned — so a signal at any
moment ends in step 6 and a clean exit status 0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.config
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import personify
from personify.config import Secret, load_project
from personify.errors import ServiceUnavailable, UsageError
from personify.server.lockfile import ServerInfo, ServerLock, new_instance_id, new_token, now_iso
from personify.session import Session
from personify.warehouse.base import backend_for

log = logging.getLogger("personify.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_DRAIN = 0.0
"""Seconds ``serve`` goes on serving after SIGTERM (``--drain``): none by default."""


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived: stop serving and clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    handled = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_until_signalled(
    config: Any, sock: socket.socket, drain: float, on_signal: Callable[[], None]
) -> None:
    """Serve ``config``'s app with uvicorn on ``sock`` under our own SIGINT/SIGTERM handlers
    (uvicorn's own are not installed: :meth:`uvicorn.Server.capture_signals` does nothing here),
    then raise :class:`Stopped` for the first signal. The first signal calls ``on_signal``; on
    SIGTERM with ``drain`` seconds the server goes on serving that long before its graceful
    shutdown (``should_exit``); SIGINT, no drain or a second signal stop it gracefully at once;
    a SIGINT during the graceful shutdown forces it (``force_exit``), as uvicorn's own does."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the handlers are installed around run(), below

    server = Server(config)
    got: list[int] = []
    drained: list[threading.Timer] = []

    def stop() -> None:  # (from the drain's timer thread: uvicorn polls it every 0.1 s)
        server.should_exit = True

    def handle(signum: int, frame: FrameType | None) -> None:
        got.append(signum)
        if len(got) == 1:
            on_signal()
            if signum == signal.SIGTERM and drain > 0:
                log.info(
                    "SIGTERM: draining for %g s (/readyz answers 503 shutting_down), then stopping",
                    drain,
                )
                # (a longer wait kills the timer's thread: the drain would never end)
                timer = threading.Timer(min(drain, threading.TIMEOUT_MAX), stop)
                timer.daemon = True
                timer.start()
                drained.append(timer)
                return
        if server.should_exit and signum == signal.SIGINT:
            server.force_exit = True  # another Ctrl-C: in-flight requests are not waited for
        server.should_exit = True

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for timer in drained:
            timer.cancel()
    if got:
        raise Stopped(got[0])


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        if e.errno == socket.EAI_AGAIN:  # the resolver is down for now
            raise ServiceUnavailable(f"cannot resolve --host {host!r}: {e.strerror}") from None
        raise UsageError(
            f"cannot resolve {host!r}: {e.strerror}",
            option="--host",
            hint="give an address of this machine (127.0.0.1, 0.0.0.0 for every interface)",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServiceUnavailable(
                f"port {port} on {host} is already in use", hint="choose another with --port"
            ) from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"{host} is not an address of this machine ({e.strerror})",
                option="--host",
                hint="give one it has: 127.0.0.1, or 0.0.0.0 for every interface",
            ) from None
        if e.errno == errno.EACCES:
            raise UsageError(
                f"not allowed to listen on {host}:{port} ({e.strerror})",
                option="--port",
                hint="ports below 1024 need privileges: choose another, e.g. --port 8787",
            ) from None
        raise ServiceUnavailable(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def logging_config(level: str) -> dict[str, Any]:
    """Plain one-line logs on stderr for uvicorn and Personify (no access log of raw paths)."""
    fmt = {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        # emails, phones and IPs masked in every record (personify.privacy.masking)
        "filters": {"pii": {"()": "personify.privacy.masking.PiiFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["pii"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "personify": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }


def serve(
    directory: str | Path = ".",
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    role: str = "all",
    ingest_processes: int | None = None,
    drain: float = DEFAULT_DRAIN,
) -> None:
    """Serve the project in ``directory`` until SIGINT/SIGTERM (see the module docstring).
    ``role`` (see :mod:`personify.server.roles`): ``all``, ``ingest`` or ``worker``;
    ``ingest_processes``: helper processes normalizing tracking batches (default: one per core
    beyond the first, :func:`personify.ingest.tracking.pool.default_processes`; 0: none);
    ``drain``: seconds to go on serving after SIGTERM, ``/readyz`` answering 503."""
    logging.config.dictConfig(logging_config(log_level))
    with _signals_stop():
        try:
            with contextlib.ExitStack() as stack:
                if role == "worker":
                    from personify.server.roles import run_worker

                    run_worker(stack, directory)
                    return
                _serve(
                    stack,
                    directory,
                    host=host,
                    port=port,
                    log_level=log_level,
                    role=role,
                    ingest_processes=ingest_processes,
                    drain=drain,
                )
        except Stopped as stop:  # also when it arrives during start-up or clean-up
            log.info("stopped by %s", signal.Signals(stop.signum).name)
    log.info("server stopped; warehouse closed")


def _serve(
    stack: contextlib.ExitStack,
    directory: str | Path,
    *,
    host: str,
    port: int,
    log_level: str,
    role: str = "all",
    ingest_processes: int | None = None,
    drain: float = DEFAULT_DRAIN,
) -> None:
    import uvicorn

    from personify.server.app import create_app

    project = load_project(directory)
    single = backend_for(project.config.warehouse).capabilities.single_process
    from personify.server.roles import check_role

    check_role(project, role)
    lock: ServerLock | None = None
    if single:
        lock = ServerLock(project.state_dir)
        lock.acquire()
        stack.callback(lock.release)
    sock = bind(host, port)
    stack.callback(sock.close)
    actual_port = int(sock.getsockname()[1])
    session = Session(project)
    stack.callback(session.close)
    wh = session.warehouse  # open and migrate now: fail before announcing anything
    wh.limit_memory()  # long-running: the engine's caches bounded (DuckDB)
    wh.limit_threads()  # each statement on its own thread: the ingest path first (DuckDB)
    from personify.realtime import profile_cache
    from personify.realtime.cache import close_cache

    profile_cache(wh, project)  # send-time and API reads go through it; a dead Redis fails here
    stack.callback(close_cache, wh)
    from personify.server.scheduler import scheduled_syncs

    scheduler = stack.enter_context(scheduled_syncs(session))  # stops before the warehouse
    token = new_token() if single else None
    info = ServerInfo(
        pid=os.getpid(),
        host=host,
        port=actual_port,
        token=token or "",
        started_at=now_iso(),
        instance=new_instance_id(),
        project=str(project.root),
        version=personify.__version__,
    )
    app = create_app(
        session, control_token=Secret(token) if token else None, instance=info.instance
    )
    from personify.realtime.recovery import process_name
    from personify.server.roles import attach_bus, attach_continuous

    applier = attach_continuous(  # not on --role ingest; catches up after a crash
        stack, app.state.personify, role, process=process_name(actual_port)
    )
    if applier is not None:  # what a scheduled sync stored is applied like events
        scheduler.on_synced = applier.submit_synced
    attach_bus(stack, app.state.personify, role)  # with bus: configured, before any request
    bus_writer = app.state.personify.extras.get("realtime.bus_writer")
    if applier is None and bus_writer is not None:  # --role ingest: a worker applies the syncs
        scheduler.on_synced = bus_writer.publisher.publish_synced
    from personify.server.engagement import start_recorder, stop_recorder

    start_recorder(app.state.personify)  # replays tracking hits a crash left in the journal
    from personify.ingest.tracking.pool import NormalizerPool, default_processes
    from personify.server.tracking_state import NORMALIZERS

    helpers = default_processes() if ingest_processes is None else ingest_processes
    if helpers > 0:  # started now: warm before the first batch (they take ~1 s to import)
        pool = NormalizerPool(helpers)
        stack.callback(pool.close)  # after the server stopped taking requests
        app.state.personify.extras[NORMALIZERS] = pool
    stack.callback(stop_recorder, app.state.personify)  # queued hits recorded before closing
    config = uvicorn.Config(
        app,
        log_config=logging_config(log_level),
        log_level=log_level,
        access_log=False,
        ws="none",
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=None,
    )
    from personify.server.tracking_state import plans_of

    plans_of(app.state.personify)  # read now: a file that cannot be used is a warning at start
    if lock is not None:
        lock.publish(info)
        stack.callback(lock.withdraw)  # runs before the warehouse closes
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving project %s (%s warehouse) on http://%s:%d%s",
        project.config.name,
        wh.scheme,
        shown,
        actual_port,
        "; other commands on this project run through this server" if single else "",
        extra={"not_personal": (f"{shown}:{actual_port}",)},  # its own address, not a person's
    )
    state = app.state.personify

    def stopping() -> None:  # the first signal: not ready, and no new scheduled run
        state.shutting_down = True
        scheduler.stop.set()

    serve_until_signalled(config, sock, drain, stopping)
