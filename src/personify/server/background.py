"""The HTTP API served from a thread of the current process, on a free loopback port.

For jobs that hold the project's warehouse themselves (``personify demo``) and want to go through
the real API anyway — a separate ``personify serve`` could not open a DuckDB file they hold::

    with background_server(session) as url:
        send_batches(url, write_key, world.events.batches())
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from personify import clock
from personify.errors import ServiceUnavailable
from personify.server.runner import bind
from personify.server.tracking_state import KEY
from personify.session import Session


@contextlib.contextmanager
def background_server(
    session: Session,
    *,
    host: str = "127.0.0.1",
    start_timeout: float = 30.0,
    now: datetime | None = None,
) -> Iterator[str]:
    """Serve ``session``'s project until the block ends; yields the base URL. ``now``: the
    server's clock is pinned to this instant (a simulation's tracking hits happen then) —
    by default the caller's pinned clock, if any (``personify demo``'s: the server's thread
    would not see it, and stamp what it stores, quarantined events included, with the real
    clock); the tracking hits queued when the block ends are recorded before it returns."""
    import uvicorn

    from personify.server.app import create_app

    if now is None:
        now = clock.pinned()  # (read here: the server's thread starts without it)
    sock = bind(host, 0)
    app = create_app(session)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        with clock.frozen(now):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name="personify-background-server")
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServiceUnavailable("the background server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        from personify.server.engagement import stop_recorder

        stop_recorder(app.state.personify)  # the hits it answered are recorded
        tracking = app.state.personify.extras.get(KEY)
        if tracking is not None:
            tracking.close()
