"""The load generator the HTTP benchmarks share (``tracking_throughput.py``,
``engagement_tracking.py``).

Lean asyncio HTTP/1.1 keep-alive clients sending pre-built requests (so the client costs little
of the shared CPU), each waiting for its answer before sending the next; latency per request and
the answers that were not what the benchmark expects (``ok``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _any_success(head: bytes, body: bytes) -> bool:
    return head.startswith(b"HTTP/1.1 2") or head.startswith(b"HTTP/1.1 3")


class Load:
    """Clients sending ``requests`` (whole HTTP/1.1 requests, bytes) over keep-alive
    connections; ``ok(head, body)`` says whether an answer counts as a success."""

    def __init__(
        self,
        port: int,
        requests: Sequence[bytes],
        ok: Callable[[bytes, bytes], bool] = _any_success,
    ) -> None:
        self.requests = list(requests)
        self.port = port
        self.ok = ok
        self.next = 0
        self.latencies: list[float] = []
        self.failures = 0

    async def client(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while self.next < len(self.requests):
                request = self.requests[self.next]
                self.next += 1
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.latencies.append(time.perf_counter() - started)
                if not self.ok(head, body):
                    self.failures += 1
        finally:
            writer.close()

    async def run(self, clients: int) -> float:
        """Seconds to send every request with ``clients`` concurrent connections."""
        started = time.perf_counter()
        await asyncio.gather(*(self.client() for _ in range(clients)))
        return time.perf_counter() - started

    def figures(self, seconds: float) -> dict[str, float]:
        """Requests/s, p50 and p99 latency (ms) and failures of a finished run."""
        lat = sorted(self.latencies)
        return {
            "rps": len(lat) / seconds,
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[max(int(len(lat) * 0.99) - 1, 0)] * 1000,
            "failures": self.failures,
        }


def get_requests(port: int, paths: Sequence[tuple[str, str]]) -> list[bytes]:
    """``GET`` requests of ``(path, user agent)`` pairs."""
    return [
        f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {ua}\r\n\r\n".encode()
        for p, ua in paths
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    import os
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tracked_messages_project(project: Path, messages: int, hits: int) -> list[tuple[str, str]]:
    """Scaffold ``project`` with ``messages`` sent abandoned-cart messages and return ``hits``
    signed tracking paths for them (open pixels and click redirects alternating, each with its
    own user agent so every hit is a new event): the engagement benchmark's and durability
    test's traffic."""
    import pyarrow as pa

    from personify.config import load_project
    from personify.delivery.tokens import project_key
    from personify.engagement import sign_click, sign_open
    from personify.scaffold import init_project
    from personify.session import open_session
    from personify.warehouse import table

    init_project(project)
    sent = datetime.now(UTC) - timedelta(days=1)
    keys = [f"m-{i}" for i in range(messages)]
    ts = pa.timestamp("us", tz="UTC")
    with open_session(project) as session:
        session.warehouse.load(
            table("messages"),
            pa.table(
                {
                    "idempotency_key": keys,
                    "customer_id": [f"c-{i}" for i in range(messages)],
                    "journey": ["cart"] * messages,
                    "step": ["first"] * messages,
                    "template": ["abandoned_cart"] * messages,
                    "status": ["sent"] * messages,
                    "decided_at": pa.array([sent] * messages, ts),
                    "sent_at": pa.array([sent] * messages, ts),
                }
            ),
        )
    secret = project_key(load_project(project))
    paths: list[tuple[str, str]] = []
    for n in range(hits):
        i = n % messages
        ua = f"Mozilla/5.0 (X11; Linux x86_64) Firefox/{n}"
        if n % 2:
            token = sign_click(secret, keys[i], f"c-{i}", 0, "https://shop.example/p/1")
            paths.append((f"/c/{token}", ua))
        else:
            paths.append((f"/o/{sign_open(secret, keys[i], f'c-{i}')}.gif", ua))
    return paths
