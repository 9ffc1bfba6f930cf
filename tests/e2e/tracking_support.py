"""Helpers for the tracking API's end-to-end tests: a lossy TCP proxy, key and count helpers."""

from __future__ import annotations

import random
import selectors
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.cli import SERVE_START_TIMEOUT
from tests.e2e.test_serve import Server, run_json, start_server


def start_server_on(
    project: Path,
    log: Path,
    port: int | None = None,
    timeout: float = SERVE_START_TIMEOUT,
    extra: Sequence[str] = (),
) -> Server:
    """``personify serve`` on ``port`` (a free one by default), healthy, or an AssertionError."""
    return start_server(project, log, timeout, port=port, extra=extra)


class LossyProxy:
    """A TCP proxy on loopback that, for a share of the answers, drops the connection instead of
    passing the answer on: the server stored the events, the client never hears so and retries —
    the lost acknowledgement every exactly-once design must survive."""

    def __init__(self, upstream_port: int, drop: float, seed: int = 7) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.drop = drop
        self.dropped = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _lose(self) -> bool:
        with self._lock:
            lose = self._random.random() < self.drop
            self.dropped += lose
            return lose

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    source: Any = key.fileobj
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is upstream and self._lose():
                        return  # the answer is lost: close both sides
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)


def write_key(project: Path) -> str:
    """The project's write key (from the ``.env`` that ``personify init`` wrote)."""
    for line in (project / ".env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "PERSONIFY_WRITE_KEY":
            return value
    raise AssertionError("no PERSONIFY_WRITE_KEY in .env")


def query(project: Path, sql: str) -> list[dict[str, Any]]:
    """Rows of a read-only query, run through the CLI (forwarded to the running server)."""
    doc = run_json("sql", sql, "--project", str(project))
    rows: list[dict[str, Any]] = doc["rows"]
    return rows
