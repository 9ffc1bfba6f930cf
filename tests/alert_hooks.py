"""A real HTTP server on loopback that records the JSON bodies POSTed to it (alert webhooks),
answering each with the next status of ``statuses`` (then 200)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.loopback import QuietHandler, serve


class Hook:
    def __init__(self, url: str) -> None:
        self.url = url
        self.bodies: list[Any] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()


@contextmanager
def webhook_receiver() -> Iterator[Hook]:
    hook: Hook

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            with hook.lock:
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 200:
                    hook.bodies.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"no")

    with serve(Handler) as url:
        hook = Hook(url + "/hook")
        yield hook
