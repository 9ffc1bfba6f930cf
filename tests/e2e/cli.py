"""Drive the real ``personify`` console script as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PERSONIFY = str(Path(sys.executable).parent / "personify")
DEMO_TIMEOUT = 600
"""Seconds one ``personify demo`` may take: about 10 CPU-seconds, but a minute of wall time at
load 13 on the shared 2-core machine. A hang guard, not a performance check."""
SERVE_START_TIMEOUT = 180
"""Seconds a ``personify serve`` may take to answer ``/healthz``: a few CPU-seconds, but 61 s of
wall time at load 18 on the shared machine (the engagement-durability tests failed at the former
60 s there). A hang guard, not a performance check."""


def _inherited() -> dict[str, str]:
    """The test process's environment without the terminal's size (``COLUMNS``, ``LINES``): a
    command's tables are then as wide as piped output makes them, whatever terminal — or
    earlier test — the suite ran in (a caller may still pass them)."""
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def personify(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``personify ARGS`` and return the finished process (never raises on exit code)."""
    return subprocess.run(
        [PERSONIFY, *args],
        cwd=cwd,
        env={**_inherited(), "PERSONIFY_NO_FORWARD": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def personify_json(*args: str, cwd: Path | None = None, **kw: Any) -> Any:
    """Run a reporting command with --json; assert success and parse the one document."""
    done = personify(*args, "--json", cwd=cwd, **kw)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# An abandoned cart and four recommendations, for tests that render the scaffold's template.
CART = {
    "url": "https://shop.example/cart/9",
    "items": [
        {
            "name": "Trail Boot",
            "url": "https://shop.example/p/1",
            "image_url": "https://i/1.png",
            "price": "89.00",
            "quantity": 1,
        }
    ],
}
RECS = [
    {
        "name": f"Rec {i}",
        "url": f"https://shop.example/p/r{i}",
        "image_url": "https://i/r.png",
        "price": "19.00",
    }
    for i in range(4)
]


# ------------------------------------------------------------------ served projects (serve)
def project_on(root: Path, *, warehouse: str | None = None, bus: str | None = None) -> Path:
    """``personify init root``, on ``warehouse`` (default: the scaffold's DuckDB file) and with
    ``bus:`` when given; returns ``root``."""
    from personify.scaffold import init_project

    init_project(root)
    yml = root / "personify.yml"
    text = yml.read_text()
    if warehouse is not None:
        assert "warehouse: duckdb:///warehouse.duckdb" in text
        text = text.replace("warehouse: duckdb:///warehouse.duckdb", f"warehouse: {warehouse}")
    if bus is not None:
        text += f"\nbus: {bus}\n"
    yml.write_text(text)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``personify serve`` process on loopback."""

    project: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, trust_env=False)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)


def stop_all(workers: Sequence[subprocess.Popen[bytes]], servers: Sequence[Server]) -> None:
    """Stop ``personify serve`` processes: SIGTERM to every live worker first (so they drain
    together), then each server, then each worker awaited (killed after 20 s)."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for s in servers:
        s.stop()
    for w in workers:
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(5)


def spawn_serve(
    project: Path,
    log: Path,
    *,
    role: str = "all",
    port: int | None = None,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``personify serve --role ROLE`` (with ``--port`` unless a worker, and ``extra``
    options), output to ``log``."""
    args = [PERSONIFY, "serve", "--project", str(project), "--role", role, *extra]
    if port is not None:
        args += ["--port", str(port)]
    with log.open("ab") as sink:
        return subprocess.Popen(
            args,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**_inherited(), "PERSONIFY_NO_FORWARD": "0"},
        )


def healthy(server: Server, timeout: float = SERVE_START_TIMEOUT) -> Server:
    """``server`` once ``/healthz`` answers 200, or an AssertionError with its log."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"serve exited with {server.proc.returncode}:\n{server.output()}")
        try:
            if server.get("/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() >= deadline:
            server.stop()
            raise AssertionError(f"serve not healthy after {timeout} s:\n{server.output()}")
        time.sleep(0.1)


def start_server(
    project: Path,
    log: Path,
    timeout: float = SERVE_START_TIMEOUT,
    *,
    port: int | None = None,
    role: str = "all",
    extra: Sequence[str] = (),
) -> Server:
    """``personify serve`` on ``port`` (a free one by default), healthy, or an AssertionError."""
    port = port or free_port()
    log.write_bytes(b"")
    proc = spawn_serve(project, log, role=role, port=port, extra=extra)
    server = Server(project, port, proc, log)
    return healthy(server, timeout)
