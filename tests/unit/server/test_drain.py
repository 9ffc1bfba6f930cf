"""``serve``'s signal handling around uvicorn (:func:`serve_until_signalled`), in-process on a real
loopback socket with real signals: SIGTERM with a drain keeps serving that long — not ready —
then stops; a second signal ends the drain at once; SIGINT does not drain."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from personify.server.runner import Stopped, bind, serve_until_signalled


class Stopping:
    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> None:
        self.at = time.monotonic()


def _app(stopping: Stopping) -> Starlette:
    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("no" if stopping.at else "yes", 503 if stopping.at else 200)

    return Starlette(routes=[Route("/readyz", ready)])


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2, trust_env=False)
    except httpx.TransportError:
        return None


def _serve(drain: float, script: Callable[[str], None]) -> tuple[Stopping, Stopped, float]:
    """Serve in this (the main) thread while ``script`` runs against the base URL in another;
    the :class:`Stopped` raised and when, measured from the first signal."""
    stopping = Stopping()
    sock = bind("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(_app(stopping), lifespan="off", log_config=None, access_log=False)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            deadline = time.monotonic() + 10
            while (r := _get(base + "/readyz")) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert r is not None and r.status_code == 200
            script(base)
        except BaseException as e:
            failed.append(e)
            os.kill(os.getpid(), signal.SIGINT)  # (never leave the server running)
            os.kill(os.getpid(), signal.SIGINT)

    late: list[int] = []  # signals once the server's handlers are gone (never the test's end)
    previous = {
        sig: signal.signal(sig, lambda signum, frame: late.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    helper = threading.Thread(target=run, daemon=True)
    helper.start()
    try:
        with pytest.raises(Stopped) as stopped:
            serve_until_signalled(config, sock, drain, stopping)
        ended = time.monotonic()
        helper.join(10)
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert late == []  # every signal the script sent reached the server's handlers
    if failed:
        raise failed[0]
    assert stopping.at is not None
    return stopping, stopped.value, ended - stopping.at


def test_sigterm_drains_not_ready_then_stops() -> None:
    during: list[Any] = []

    def script(base: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        during.append(_get(base + "/readyz"))  # still served, not ready

    _, stopped, took = _serve(1.5, script)
    assert stopped.signum == signal.SIGTERM
    assert [r.status_code if r else None for r in during] == [503]
    assert 1.5 <= took < 6  # the drain, then a graceful stop without another signal


def test_a_second_signal_ends_the_drain() -> None:
    def script(base: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)

    _, stopped, took = _serve(60, script)
    assert stopped.signum == signal.SIGTERM and took < 5  # not the 60 s


def test_sigint_does_not_drain() -> None:
    def script(base: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    _, stopped, took = _serve(60, script)
    assert stopped.signum == signal.SIGINT and took < 5


def test_the_handlers_before_are_back_afterwards() -> None:
    """A signal after the server returned reaches the handler that was there before (``serve``'s
    own, in production: a signal during the clean-up still ends it cleanly)."""
    got: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    sock = bind("127.0.0.1", 0)
    try:
        config = uvicorn.Config(_app(Stopping()), lifespan="off", log_config=None)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(Stopped):
            serve_until_signalled(config, sock, 0, Stopping())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert got == [signal.SIGTERM]
    finally:
        sock.close()
        signal.signal(signal.SIGTERM, before)
