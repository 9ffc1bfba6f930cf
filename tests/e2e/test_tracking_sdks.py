"""The official Segment and RudderStack Python SDKs against a real ``personify serve`` process.

Between them and the server, a proxy loses a share of the answers (the events were stored, the SDK
does not know and sends the batch again), and the application itself sends some events twice: every
event must be stored exactly once. Then the fault test: ``kill -9`` the server in the middle of a
load, restart it, let the clients retry — stored = acknowledged ∪ retried, no duplicates.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from personify.scaffold import init_project
from tests.e2e.test_serve import Server
from tests.e2e.tracking_support import LossyProxy, query, start_server_on, write_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
EVENTS = 1500
RESENT = 150
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
HELPERS = ("--ingest-processes", "1")
"""The SDKs' batches go through exactly one normalizer process, whatever the machine's
cores (the default is one per core beyond the first: none on one core, more on many)."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    project = tmp_path / "shop"
    init_project(project)
    server = start_server_on(project, tmp_path / "serve.log", extra=HELPERS)
    try:
        yield server
    finally:
        server.stop()


def _send(client: object, prefix: str, errors: list[object]) -> None:
    track = client.track  # type: ignore[attr-defined]
    for i in range(EVENTS):
        track(
            user_id=f"user-{i % 97}",
            event="Signed Up",
            properties={"plan": "pro", "n": i},
            timestamp=T0 + timedelta(seconds=i),
            message_id=f"{prefix}-{i}",
        )
    for i in range(0, EVENTS, EVENTS // RESENT):  # the app sends some events again
        track(
            user_id=f"user-{i % 97}",
            event="Signed Up",
            properties={"plan": "pro", "n": i},
            timestamp=T0 + timedelta(seconds=i),
            message_id=f"{prefix}-{i}",
        )
    client.flush()  # type: ignore[attr-defined]
    client.join()  # type: ignore[attr-defined]


def _stored(project: Path, prefix: str) -> tuple[int, int]:
    rows = query(
        project,
        f"SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events "
        f"WHERE message_id LIKE '{prefix}-%'",
    )
    return int(rows[0]["n"]), int(rows[0]["d"])


def test_segment_and_rudderstack_sdks_store_every_event_once(served: Server) -> None:
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    logging.getLogger("segment").setLevel(logging.CRITICAL)
    logging.getLogger("rudder").setLevel(logging.CRITICAL)
    key = write_key(served.project)
    proxy = LossyProxy(served.port, drop=0.15)
    errors: list[object] = []
    try:
        segment = SegmentClient(
            key,
            host=proxy.url,
            gzip=True,
            upload_size=100,
            max_retries=20,
            on_error=lambda e, batch: errors.append(e),
        )
        rudder = RudderClient(
            key,
            host=proxy.url,
            gzip=True,
            upload_size=100,
            max_retries=20,
            on_error=lambda e, batch: errors.append(e),
        )
        threads = [
            threading.Thread(target=_send, args=(segment, "seg", errors)),
            threading.Thread(target=_send, args=(rudder, "rud", errors)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
            assert not t.is_alive(), "an SDK did not finish in time"
    finally:
        proxy.close()
    assert errors == []
    assert proxy.dropped > 0, "the proxy lost no answer: the test proved nothing"
    assert _stored(served.project, "seg") == (EVENTS, EVENTS)
    assert _stored(served.project, "rud") == (EVENTS, EVENTS)
    assert query(served.project, "SELECT count(*) AS n FROM quarantine")[0]["n"] == 0
    # the server logs neither the write key nor event content
    log = served.output()
    assert key not in log and "user-1" not in log


class Loader:
    """Concurrent clients sending batches of 100 with fixed messageIds, retrying each batch until
    it is acknowledged; records what was acknowledged and when."""

    def __init__(self, url: str, key: str, batches: int) -> None:
        self.url, self.key = url, key
        self.pending = list(range(batches))
        self.acked: set[int] = set()
        self.retried: set[int] = set()
        self.lock = threading.Lock()

    def body(self, b: int) -> dict[str, object]:
        return {
            "batch": [
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "messageId": f"ft-{b}-{i}",
                    "anonymousId": f"anon-{i}",
                    "properties": {"product_id": f"p{i}"},
                }
                for i in range(100)
            ]
        }

    def run(self, deadline: float) -> None:
        with httpx.Client(auth=(self.key, ""), timeout=10, trust_env=False) as http:
            while time.monotonic() < deadline:
                with self.lock:
                    if not self.pending:
                        return
                    b = self.pending.pop(0)
                while time.monotonic() < deadline:
                    try:
                        r = http.post(self.url + "/v1/batch", json=self.body(b))
                        if r.status_code == 200:
                            assert r.json() == {"success": True}, r.text
                            with self.lock:
                                self.acked.add(b)
                            break
                    except httpx.TransportError:
                        pass
                    with self.lock:
                        self.retried.add(b)
                    time.sleep(0.2)


def test_kill_9_mid_load_loses_nothing_acknowledged_and_doubles_nothing(
    served: Server, tmp_path: Path
) -> None:
    batches = 60
    loader = Loader(served.url, write_key(served.project), batches)
    deadline = time.monotonic() + 180
    threads = [threading.Thread(target=loader.run, args=(deadline,)) for _ in range(4)]
    for t in threads:
        t.start()
    while len(loader.acked) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    helpers = normalizer_pids(served.proc.pid)
    assert len(helpers) == 1, "serve started no normalizer process"
    assert _helped(served) > 0, "no batch was normalized by a helper process"
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)
    with loader.lock:
        acked_before_kill = set(loader.acked)
    time.sleep(1.0)  # clients fail and retry meanwhile
    restarted = start_server_on(
        served.project, tmp_path / "restart.log", served.port, extra=HELPERS
    )
    served.proc, served.log = restarted.proc, restarted.log
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    assert len(loader.acked) == batches, "not every batch was acknowledged in time"
    assert loader.retried, "no client had to retry: the kill came too late"
    assert acked_before_kill, "the kill came before any acknowledgement"
    n, distinct = _stored(served.project, "ft")
    assert (n, distinct) == (batches * 100, batches * 100)
    for pid in helpers:  # the killed server's helpers saw their socket close and exited
        assert gone(pid, 30), f"normalizer process {pid} outlived its server"
    per_batch = query(
        served.project,
        "SELECT count(DISTINCT split_part(message_id, '-', 2)) AS b FROM events "
        "WHERE message_id LIKE 'ft-%'",
    )
    assert per_batch[0]["b"] == batches


def normalizer_pids(server_pid: int) -> list[int]:
    """The ``personify serve`` process's normalizer helpers (its children running the pool)."""
    found = []
    for task in Path(f"/proc/{server_pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"personify.ingest.tracking.pool" in argv:
                found.append(int(child))
    return found


def _helped(server: Server) -> float:
    for _ in range(100):  # the first batches go in process while the helper starts
        for line in server.get("/metrics").text.splitlines():
            if line.startswith('personify_tracking_batches_normalized_total{where="helper"}'):
                return float(line.split()[-1])
        time.sleep(0.05)
    return 0.0


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited; its parent (killed) is not there to reap it
            return True
        time.sleep(0.1)
    return False
