"""A real HTTP server on 127.0.0.1 standing for an analytics tool's batch endpoint (Segment's
``POST /v1/batch``): it checks the write key (HTTP Basic), keeps every event it took in order
(doubles included, so a test can count them), refuses a batch holding an event marked
``properties.bad`` with a 400, and fails on demand (500s, a 401)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import QuietHandler, serve

WRITE_KEY = "wk_collector"


@dataclass
class Collector:
    taken: list[dict[str, Any]] = field(default_factory=list)
    """Every event taken, in order, as received."""
    requests: int = 0
    fail_next: int = 0
    """The next N requests answer 500."""
    fail_from: int | None = None
    """Every request from this one on (1-based) answers 500."""
    refuse_all: bool = False
    """Every batch answers 400 (a request the API cannot take, whatever its events)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [str(e["messageId"]) for e in self.taken]


def _handler(api: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            raw = self.body()
            with api.lock:
                api.requests += 1
                n = api.requests
                if api.fail_next:
                    api.fail_next -= 1
                    return self.answer(500, {"error": "try later"})
                if api.fail_from is not None and n >= api.fail_from:
                    return self.answer(500, {"error": "down"})
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
                if auth != expected:
                    return self.answer(401, {"error": "bad write key"})
                if self.path != "/v1/batch":
                    return self.answer(404, {"error": "no such endpoint"})
                body = json.loads(raw)
                if api.refuse_all:
                    return self.answer(400, {"error": "context.library is required"})
                batch = body["batch"]
                for event in batch:
                    if (event.get("properties") or {}).get("bad"):
                        return self.answer(
                            400,
                            {"error": f"invalid event {event['messageId']} from ann@x.org"},
                        )
                api.taken += batch
            return self.answer(200, {"success": True})

    return Handler


@contextlib.contextmanager
def serve_collector(api: Collector) -> Iterator[str]:
    """``api`` served on a free loopback port for the block; yields its base URL."""
    with serve(_handler(api)) as base:
        yield base
