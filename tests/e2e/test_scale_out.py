"""Scale-out on one machine: two ingest and two worker ``personify serve`` processes sharing
PostgreSQL (a schema of the test's own) and NATS JetStream (a stream of the test's own). Events
are posted to both ingest processes — some batches twice, to different ones — and a worker is
killed with SIGKILL mid-way and restarted: every event is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from personify.realtime.bus import bus_depth, parse_bus_url
from personify.warehouse import connect
from tests.conftest import service_missing
from tests.e2e.cli import (
    Server,
    personify_json,
    project_on,
    spawn_serve,
    start_server,
    stop_all,
)
from tests.e2e.tracking_support import write_key

NATS = "nats://127.0.0.1:4222"
BATCHES = 40
PER_BATCH = 50


@pytest.fixture
def stream() -> Iterator[str]:
    """A JetStream stream name of the test's own, deleted afterwards."""
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=2).close()
    except OSError as e:
        service_missing("NATS", e.strerror or type(e).__name__)
    name = f"personify_test_{uuid.uuid4().hex[:10]}"
    yield name

    async def delete() -> None:
        import nats

        nc = await nats.connect(NATS)
        try:
            await nc.jetstream().delete_stream(name)
        except Exception:  # never created
            pass
        await nc.close()

    asyncio.run(delete())


def start_worker(project: Path, log: Path) -> subprocess.Popen[bytes]:
    return spawn_serve(project, log, role="worker")


def launch_ingest(project: Path, log: Path) -> Server:
    return start_server(project, log, role="ingest", timeout=120)  # four processes start at once


def body(b: int) -> dict[str, object]:
    return {
        "batch": [
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": f"so-{b}-{i}",
                "anonymousId": f"anon-{i}",
                "properties": {"product_id": f"p{i}"},
            }
            for i in range(PER_BATCH)
        ]
    }


@pytest.mark.postgres
@pytest.mark.timeout(600)  # a hang guard only: every wait below ends on its condition
def test_two_ingest_two_workers_exactly_once_with_a_worker_killed(
    postgres_url: str, stream: str, tmp_path: Path
) -> None:
    bus = f"{NATS}?stream={stream}&ack_wait=2"
    project = project_on(tmp_path / "shop", warehouse=postgres_url, bus=bus)
    connect(postgres_url).close()  # migrated once, before four processes start
    key = write_key(project)
    workers = [start_worker(project, tmp_path / f"worker{i}.log") for i in range(2)]
    ingest = [launch_ingest(project, tmp_path / f"ingest{i}.log") for i in range(2)]
    try:
        with httpx.Client(auth=(key, ""), timeout=60, trust_env=False) as http:
            for b in range(BATCHES):
                r = http.post(ingest[b % 2].url + "/v1/batch", json=body(b))
                assert r.status_code == 200, r.text
                if b % 5 == 0:  # a client retrying against the other ingest process
                    again = http.post(ingest[(b + 1) % 2].url + "/v1/batch", json=body(b))
                    assert again.status_code == 200, again.text
                if b == BATCHES // 2:
                    workers[0].send_signal(signal.SIGKILL)
                    workers[0].wait(10)
                    workers[0] = start_worker(project, tmp_path / "worker0.log")
        expected = BATCHES * PER_BATCH
        # drained: every event stored and nothing pending or unacked on the bus, so no
        # redelivery can still land (the killed worker's unacked batches came back after ack_wait)
        settings = parse_bus_url(bus)
        wh = connect(postgres_url)
        try:
            deadline = time.monotonic() + 240
            count = depth = -1
            while time.monotonic() < deadline:
                count = int(wh.scalar("SELECT count(*) FROM events") or 0)
                depth = bus_depth(settings, timeout=30) if count >= expected else -1
                if depth == 0:
                    break
                time.sleep(0.25)
            assert depth == 0, f"not drained: {count} of {expected} events stored, depth {depth}"
            total, distinct = wh.fetch("SELECT count(*), count(DISTINCT message_id) FROM events")[0]
        finally:
            wh.close()
        assert (total, distinct) == (expected, expected)
        # freshness you can see: the bus drained, on an ingest's /metrics (re-read at most every
        # 2 s) and in status; an ingest process runs no continuous mode (the workers do)
        deadline = time.monotonic() + 60
        while True:
            families = {
                f.name: f for f in text_string_to_metric_families(ingest[0].get("/metrics").text)
            }
            pending = families["personify_bus_pending"].samples[0].value
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert pending == 0
        assert "personify_realtime_queue_depth" not in families
        assert "personify_source_lag_seconds" in families
        status = personify_json("status", "--project", str(project))
        assert status["queues"]["bus_depth"] == 0, status["queues"]
        web = next(s for s in status["sources"] if s["name"] == "web")
        assert web["events"] == expected and web["lag_seconds"] is not None
    finally:
        stop_all(workers, ingest)
