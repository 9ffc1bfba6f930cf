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
