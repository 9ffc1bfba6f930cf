"""A small tracking client: Segment-shaped Arrow batches sent through ``POST /v1/batch``.

Used by the demo (its web sessions reach the warehouse through the real API) and by anyone
loading historical events. Each Arrow row is one event with Segment's field names (``messageId``,
``type``, ``event``, ``anonymousId``, ``userId``, ``timestamp``, ``properties`` as JSON text or a
struct, ``context``, ``traits`` …); null fields are left out. Events are packed into requests of
at most :data:`REQUEST_BUDGET` bytes, sent gzip-compressed by a few threads, and each request is
retried (transport errors, 429 with ``Retry-After``, 5xx) until acknowledged: the server's
``messageId`` deduplication makes retries safe. No ``sentAt`` is sent: these are recorded events,
so their timestamps are kept as given.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec
import pyarrow as pa

from personify.errors import ServiceUnavailable

REQUEST_BUDGET: Final = 400 * 1024
"""Largest request body built (the server takes 500 KB)."""
_JSON_TEXT: Final = ("properties", "traits", "context")


@dataclass
class SendReport:
    """What the server said about everything sent."""

    requests: int = 0
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    rejected: int = 0
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Quarantined and rejected events by reason."""

    def add(self, answer: dict[str, Any], events: int) -> None:
        self.requests += 1
        self.received += events
        if answer.get("success") is True and "received" not in answer:
            self.accepted += events
            return
        for key in ("accepted", "duplicates", "quarantined", "rejected"):
            setattr(self, key, getattr(self, key) + int(answer.get(key, 0)))
        for error in answer.get("errors", []):
            self.reasons[error["reason"]] = self.reasons.get(error["reason"], 0) + 1


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    return value


def events_json(batch: pa.RecordBatch | pa.Table) -> Iterator[bytes]:
    """Each row of ``batch`` as one event's JSON (JSON-text columns embedded as they are)."""
    for row in batch.to_pylist():
        doc: dict[str, Any] = {}
        for key, value in row.items():
            if value is None:
                continue
            if key in _JSON_TEXT and isinstance(value, str):
                value = msgspec.Raw(value.encode())
            doc[key] = _clean(value)
        yield msgspec.json.encode(doc)


def bodies(events: Iterable[bytes], *, budget: int = REQUEST_BUDGET) -> Iterator[tuple[bytes, int]]:
    """``(request body, events in it)``: events packed into ``/v1/batch`` bodies."""
    parts: list[bytes] = []
    size = 0
    for event in events:
        if parts and size + len(event) + 1 > budget:
            yield _body(parts), len(parts)
            parts, size = [], 0
        parts.append(event)
        size += len(event) + 1
    if parts:
        yield _body(parts), len(parts)


def _body(parts: list[bytes]) -> bytes:
    # no sentAt: these are recorded events, their timestamps are kept as given (no skew
    # correction, which is for live devices whose clocks may be off)
    return b'{"batch":[' + b",".join(parts) + b"]}"


class Sender:
    """Sends bodies with a few threads, each retrying its request until it is acknowledged."""

    def __init__(
        self,
        url: str,
        write_key: str,
        *,
        threads: int = 4,
        deadline_s: float = 600.0,
        on_sent: Callable[[SendReport], None] | None = None,
        compress: bool = True,
    ) -> None:
        """``on_sent(report)`` is called after each acknowledged request (progress);
        ``compress=False`` sends plain JSON (on loopback, gzip only costs CPU on both ends)."""
        self.url = url.rstrip("/") + "/v1/batch"
        self.auth = (write_key, "")
        self.threads = threads
        self.on_sent = on_sent
        self.compress = compress
        self.deadline = time.monotonic() + deadline_s
        self.report = SendReport()
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    def _post(self, client: httpx.Client, body: bytes, events: int) -> None:
        delay = 0.2
        headers = {"content-type": "application/json"}
        if self.compress:
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        while True:
            try:
                r = client.post(self.url, content=body, headers=headers)
                if r.status_code == 200:
                    with self._lock:
                        self.report.add(r.json(), events)
                        if self.on_sent is not None:
                            self.on_sent(self.report)
                    return
                if r.status_code not in (429, 500, 502, 503, 504):
                    raise ServiceUnavailable(f"the tracking API refused a batch: {r.text[:300]}")
                wait = float(r.headers.get("retry-after", delay))
            except httpx.TransportError:
                wait = delay
            if time.monotonic() + wait > self.deadline:
                raise ServiceUnavailable("the tracking API did not acknowledge in time")
            with self._lock:
                self.report.retries += 1
            time.sleep(wait)
            delay = min(delay * 2, 5.0)

    def _work(self, queue: Iterator[tuple[bytes, int]]) -> None:
        with httpx.Client(auth=self.auth, timeout=30, trust_env=False) as client:
            while self._failure is None:
                with self._lock:
                    item = next(queue, None)
                if item is None:
                    return
                try:
                    self._post(client, *item)
                except BaseException as e:
                    self._failure = e
                    return

    def send(self, events: Iterable[bytes]) -> SendReport:
        """Send every event; raises :class:`ServiceUnavailable` if some were never acknowledged."""
        queue = bodies(events)
        workers = [threading.Thread(target=self._work, args=(queue,)) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if self._failure is not None:
            raise self._failure
        return self.report


def send_batches(
    url: str,
    write_key: str,
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    threads: int = 4,
    on_sent: Callable[[SendReport], None] | None = None,
    compress: bool = True,
) -> SendReport:
    """Send Segment-shaped Arrow batches to the tracking API at ``url``; what it answered.
    ``on_sent(report)`` follows each acknowledged request (for a progress bar); ``compress``:
    gzip the bodies."""
    events = (event for batch in batches for event in events_json(batch))
    sender = Sender(url, write_key, threads=threads, on_sent=on_sent, compress=compress)
    return sender.send(events)
