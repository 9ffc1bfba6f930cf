"""What a transport has handed over: an append-only file of sent keys, so a key is sent once.

SMTP servers and ESP APIs cannot tell a retry from a new message, so the SMTP and ESP transports
record each accepted message — a hash of its idempotency key and where it went — in
``.personify/delivery/<transport>.sent`` (one JSON line each, written after the server accepted
it). Sending a key found there returns ``Delivered(new=False)`` without contacting the server. The
file holds no address and no key in clear. Lines appended by another process are picked up when a
key is not found (the file is re-read from where this process stopped). A crash between the
server's acceptance and the line being written can still send that one message twice: the journey
engine's ``messages`` row is the other guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from personify import clock


def key_hash(key: str) -> str:
    """The stored form of an idempotency key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class SentLedger:
    """Keys handed over by one transport (``path=None``: in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._sent: dict[str, str] = {}
        self._offset = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """Where ``key`` went, when it was handed over before; else ``None``."""
        h = key_hash(key)
        with self._lock:
            if h not in self._sent:
                self._catch_up()
            return self._sent.get(h)

    def record(self, key: str, location: str) -> None:
        """Remember that ``key`` went to ``location`` (durably, before returning)."""
        h = key_hash(key)
        line = json.dumps({"k": h, "loc": location, "at": clock.now().isoformat()}) + "\n"
        with self._lock:
            self._sent[h] = location
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _catch_up(self) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a torn last line is read again next time
        for raw in data[:end].splitlines():
            try:
                doc = json.loads(raw)
                self._sent[str(doc["k"])] = str(doc.get("loc", ""))
            except (ValueError, KeyError, TypeError):
                continue
        self._offset += end
