"""Event forwarding (``kind: events``) at scale: N stored events forwarded to a real local
collector (a ``POST /v1/batch`` endpoint, stdlib HTTP server on loopback) on DuckDB.

Two forwardings: the first sends every event (100 a request, recorded by the thousand after their
2xx), the second finds nothing waiting. Baseline in the same run: the same events POSTed to the
same endpoint by a bare httpx client, nothing read, checked or recorded — what sending costs by
itself. No performance goal: a figure to watch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from personify import clock
from personify.config import EventsDestination, Project, ProjectConfig, RestClient, Secret
from personify.destinations import push_destinations
from personify.destinations.events import payload
from personify.session import Session
from personify.warehouse import table

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class _Collector(BaseHTTPRequestHandler):
    taken = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with _Collector.lock:
            _Collector.taken += len(body["batch"])
        data = b'{"success": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def events(n: int) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "message_id": [f"m{i:09d}" for i in range(n)],
            "type": ["track"] * n,
            "event": ["Order Completed" if i % 3 else "Product Viewed" for i in range(n)],
            "user_id": [f"u{i % 5000}" for i in range(n)],
            "timestamp": pa.array([NOW - timedelta(seconds=2)] * n, ts),
            "received_at": pa.array([NOW - timedelta(seconds=1)] * n, ts),
            "source": ["web"] * n,
            "properties": [json.dumps({"order_id": f"o{i}", "total": i % 200}) for i in range(n)],
            "context": [json.dumps({"ip": "203.0.113.9", "userAgent": "bench"})] * n,
        }
    )


def bare_send(url: str, data: pa.Table) -> float:
    """The baseline: the same events, in Segment's shape, POSTed 100 a request."""
    rows = [payload(r) for r in data.to_pylist()]
    for r in rows:
        r["properties"] = json.loads(r["properties"])
        r["context"] = json.loads(r["context"])
    t0 = time.perf_counter()
    with httpx.Client(base_url=url) as client:
        for i in range(0, len(rows), 100):
            client.post("/v1/batch", json={"batch": rows[i : i + 100]}).raise_for_status()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    n = args.events
    data = events(n)
    with tempfile.TemporaryDirectory() as tmp, collector() as url:
        root = Path(tmp)
        destination = EventsDestination(
            name="analytics",
            path="/v1/batch",
            start="all",
            consent="none",
            client=RestClient(base_url=url, requests_per_second=100_000.0),
        )
        config = ProjectConfig(
            warehouse=f"duckdb:///{root / 'w.duckdb'}",
            signing_key=Secret("bench"),
            destinations=(destination,),
        )
        figures = []
        with Session(Project(config, root, root / "personify.yml")) as session:
            session.warehouse.load(table("events"), data)
            for label in ("first forwarding", "nothing waiting"):
                t0, c0 = time.perf_counter(), time.process_time()
                with clock.frozen(NOW):
                    (result,) = push_destinations(session)
                assert result.error is None, result.error
                figures.append(
                    (label, time.perf_counter() - t0, time.process_time() - c0, result.counts)
                )
        assert _Collector.taken == n, _Collector.taken  # every event once
        bare = bare_send(url, data)
    print(f"| figure ({n:,} events, DuckDB) | value | baseline in the same run |")
    print("|---|---|---|")
    for label, wall, cpu, counts in figures:
        sent = counts.get("events_sent", 0)
        rate = f", {sent / wall:,.0f} events/s" if sent else ""
        base = f"bare httpx POSTs of the same {n:,} events: {bare:.2f} s ({n / bare:,.0f}/s)"
        print(f"| {label}: {sent:,} sent | {wall:.2f} s wall, {cpu:.2f} CPU-s{rate} | {base} |")


if __name__ == "__main__":
    main()
