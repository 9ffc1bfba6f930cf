"""Kubernetes-style probes on a real ``personify serve``: while its PostgreSQL is unreachable the
server is not ready (503, saying why) but alive (200), and it is ready again once PostgreSQL is
back — no restart. The outage is a TCP proxy on loopback between the server and PostgreSQL,
taken down (listener and every connection closed) and brought back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import service_missing
from tests.e2e.cli import Server, free_port, personify, personify_json, project_on, start_server
from tests.e2e.tracking_support import write_key


class Outage:
    """A TCP proxy on loopback to ``upstream`` that can be taken down and brought back on its
    port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.up()

    def up(self) -> None:
        self._stop = threading.Event()
        deadline = time.monotonic() + 30
        while True:  # (the port may be held a moment by another process's outgoing connection)
            try:
                self._listener = socket.create_server(("127.0.0.1", self.port))  # (SO_REUSEADDR)
                break
            except OSError:
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(
            target=self._accept, args=(self._listener, self._stop), daemon=True
        ).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client, stop), daemon=True).start()

    def _pipe(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        with self._lock:
            if stop.is_set():
                client.close()
                upstream.close()
                return
            self._open |= {client, upstream}
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    source: Any = key.fileobj
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            with self._lock:
                self._open -= {client, upstream}
            client.close()
            upstream.close()


def _until(server: Server, path: str, status: int, seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        r = server.get(path)
        if r.status_code == status or time.monotonic() >= deadline:
            return r
        time.sleep(0.3)


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_not_ready_but_alive_while_postgres_is_unreachable(
    postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    outage = Outage((parts.hostname or "127.0.0.1", parts.port or 5432))
    through = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{outage.port}"))
    project = project_on(tmp_path / "shop", warehouse=through)
    server = start_server(project, tmp_path / "serve.log")
    try:
        assert server.get("/livez").status_code == 200
        ready = server.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert [c["name"] for c in ready.json()["checks"]] == [
            "warehouse",
            "schema",
            "tracking_plan",
        ]

        outage.down()
        ready = _until(server, "/readyz", 503)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["status"] == "not_ready"
        assert body["checks"][0]["name"] == "warehouse" and not body["checks"][0]["ok"]
        assert body["error"]["code"] == "not_ready"
        assert "warehouse" in body["error"]["message"]
        live = server.get("/livez")
        assert live.status_code == 200 and live.json()["status"] == "alive"
        assert server.get("/healthz").status_code == 503  # (unchanged: it asks the warehouse)
        assert server.get("/readyz").status_code == 503  # still down: still not ready
        assert server.proc.poll() is None

        outage.up()  # PostgreSQL is back: ready again, no restart
        ready = _until(server, "/readyz", 200)
        assert ready.status_code == 200, ready.text
        assert server.get("/healthz").status_code == 200
    finally:
        server.stop()
        outage.down()
    assert "Traceback" not in server.output()


NATS = ("127.0.0.1", 4222)


@pytest.fixture
def stream() -> Iterator[str]:
    """A JetStream stream name of the test's own, deleted afterwards."""
    try:
        socket.create_connection(NATS, timeout=2).close()
    except OSError as e:
        service_missing("NATS", e.strerror or type(e).__name__)
    name = f"personify_test_{uuid.uuid4().hex[:10]}"
    yield name

    async def delete() -> None:
        import nats

        nc = await nats.connect("nats://127.0.0.1:4222")
        with contextlib.suppress(Exception):  # never created
            await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(delete())


@pytest.mark.timeout(300)
def test_not_ready_while_the_bus_is_unreachable(stream: str, tmp_path: Path) -> None:
    """``serve`` with ``bus:``: ``/readyz`` checks the bus (connected, the stream answers); with
    the bus's port closed it is 503 naming the bus — alive all along — and ready again once the
    bus is back."""
    outage = Outage(NATS)
    bus = f"nats://127.0.0.1:{outage.port}?stream={stream}"
    project = project_on(tmp_path / "shop", bus=bus)
    server = start_server(project, tmp_path / "serve.log")
    try:
        ready = server.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = {c["name"]: c for c in ready.json()["checks"]}
        assert list(checks) == ["warehouse", "schema", "bus", "tracking_plan"]
        assert checks["bus"]["ok"] and stream in checks["bus"]["detail"]

        outage.down()  # the bus's port closed: no connection, none accepted
        ready = _until(server, "/readyz", 503)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        bus_check = next(c for c in body["checks"] if c["name"] == "bus")
        assert not bus_check["ok"]
        assert f"127.0.0.1:{outage.port}" in bus_check["detail"]
        assert "bus: " in body["error"]["message"]
        assert all(c["ok"] for c in body["checks"] if c["name"] != "bus")  # only the bus
        assert server.get("/livez").status_code == 200

        outage.up()  # back on the same port: the client reconnects, ready again
        ready = _until(server, "/readyz", 200)
        assert ready.status_code == 200, ready.text
    finally:
        server.stop()
        outage.down()
    assert "Traceback" not in server.output()


def _refused_for_the_bus_down(project: Path, *role: str) -> str:
    """``serve`` on a project whose bus has nothing listening on its port: it stops on its own,
    exit 75 (try again later), well before nats-py's endless retries would end; its stderr."""
    began = time.monotonic()
    done = personify("serve", "--port", "0", *role, "--project", str(project), timeout=90)
    assert time.monotonic() - began < 60, done.stderr
    assert done.returncode == 75, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.mark.timeout(180)
def test_serve_stops_naming_the_bus_when_nothing_listens_there(tmp_path: Path) -> None:
    port = free_port()  # closed once picked: nothing listens there
    project = project_on(tmp_path / "shop", bus=f"nats://ops:s3cret-pw@127.0.0.1:{port}")
    said = _refused_for_the_bus_down(project)
    assert f"cannot reach the bus at 127.0.0.1:{port} within 10 s" in said
    assert "nats-server -js" in said  # what to do
    assert "s3cret-pw" not in said and "ops:" not in said
    assert not (project / ".personify" / "server.json").exists()  # never announced


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_ingest_and_worker_stop_naming_the_bus_when_nothing_listens_there(
    postgres_url: str, tmp_path: Path
) -> None:
    port = free_port()
    bus = f"nats://ops:s3cret-pw@127.0.0.1:{port}"
    project = project_on(tmp_path / "shop", warehouse=postgres_url, bus=bus)
    for role in ("ingest", "worker"):
        said = _refused_for_the_bus_down(project, "--role", role)
        assert f"cannot reach the bus at 127.0.0.1:{port}" in said, role
        assert "s3cret-pw" not in said, role


@pytest.mark.timeout(300)
def test_sigterm_drains_not_ready_while_it_still_serves(tmp_path: Path) -> None:
    """``serve --drain 4``: from SIGTERM on ``/readyz`` is 503 ``shutting_down`` while the
    server goes on answering — an event tracked during the drain is stored — then it exits 0
    once the drain is over, without a second signal."""
    project = project_on(tmp_path / "shop")
    server = start_server(project, tmp_path / "serve.log", extra=["--drain", "4"])
    key = write_key(project)
    try:
        assert server.get("/readyz").status_code == 200
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        ready = _until(server, "/readyz", 503, seconds=3)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["status"] == "shutting_down" and body["error"]["code"] == "shutting_down"
        assert server.get("/livez").status_code == 200  # alive: not to be killed
        event = {
            "type": "track",
            "event": "Signed Up",
            "userId": "u-drain",
            "messageId": "m-drain",
        }
        tracked = httpx.post(
            server.url + "/v1/track", json=event, auth=(key, ""), timeout=10, trust_env=False
        )
        assert tracked.status_code == 200, tracked.text  # still served while draining
        assert time.monotonic() - signalled < 4 and server.proc.poll() is None
        assert server.proc.wait(timeout=60) == 0  # ended by the drain, no second signal
        assert time.monotonic() - signalled >= 4
    finally:
        server.stop()
    log = server.output()
    assert "draining for 4 s" in log and "Traceback" not in log
    rows = personify_json(
        "sql",
        "SELECT count(*) AS n FROM events WHERE message_id = 'm-drain'",
        "--project",
        str(project),
    )["rows"]
    assert rows == [{"n": 1}]  # what it took while draining was stored before it exited


@pytest.mark.timeout(300)
def test_a_second_sigterm_ends_the_drain(tmp_path: Path) -> None:
    project = project_on(tmp_path / "shop")
    server = start_server(project, tmp_path / "serve.log", extra=["--drain", "120"])
    try:
        server.proc.send_signal(signal.SIGTERM)
        ready = _until(server, "/readyz", 503, seconds=5)
        assert ready.json()["status"] == "shutting_down"
        server.proc.send_signal(signal.SIGTERM)  # the operator does not want to wait
        assert server.proc.wait(timeout=30) == 0  # not the 120 s
    finally:
        server.stop()
    assert "Traceback" not in server.output()
