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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with api.lock:
                api.requests += 1
                n = api.requests
                if api.fail_next:
                    api.fail_next -= 1
                    return self._answer(500, {"error": "try later"})
                if api.fail_from is not None and n >= api.fail_from:
                    return self._answer(500, {"error": "down"})
                auth = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
                if auth != expected:
                    return self._answer(401, {"error": "bad write key"})
                if self.path != "/v1/batch":
                    return self._answer(404, {"error": "no such endpoint"})
                body = json.loads(raw)
                if api.refuse_all:
                    return self._answer(400, {"error": "context.library is required"})
                batch = body["batch"]
                for event in batch:
                    if (event.get("properties") or {}).get("bad"):
                        return self._answer(
                            400,
                            {"error": f"invalid event {event['messageId']} from ann@x.org"},
                        )
                api.taken += batch
            return self._answer(200, {"success": True})

    return Handler


@contextlib.contextmanager
def serve_collector(api: Collector) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
