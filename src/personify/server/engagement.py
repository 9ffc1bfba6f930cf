"""Tracking routes: ``GET /o/{token}.gif`` (the open pixel) and ``GET /c/{token}`` (a click).

Both verify the signed token (:func:`personify.engagement.verify`, HMAC with the project's
``signing_key``); a forged, altered or malformed token answers 404 and records nothing. A valid
one answers at once — the pixel (a 1×1 transparent GIF) or a 302 to the URL *inside the
token* (never a URL from the query string: no open redirect). ``HEAD`` is answered the same way
and flagged as a scanner's. No authentication: the token is the credential; the access log
names the route template, never the token.

**Fast path.** These are the hottest routes of the server (every email opened, every link
followed), so :class:`FastTracking` — a pure-ASGI middleware in front of the app — answers them
without the router, request and response objects: one path check, one token verification with
the key read once, pre-built headers; the request metrics (their series bound once per method,
route and status) and the access log are kept as for every route.

**Durable hits.** A hit is appended to a journal file
(``.personify/engagement/hits-PID-TAG-N.jsonl``, one JSON line, in the operating system's page
cache before the answer: the segment is a shared memory map of the file, so appending is a copy
with no system call — ``os.write`` let go of the interpreter lock at every hit, and on a busy
server got it back only after the recorder thread's next switch interval) and queued; one
recorder thread records the hits waiting together, at most every :data:`BATCH_SECONDS`
(:func:`personify.engagement.record.record_many`: one lookup, one store — a batch's statements
cost the same for 50 hits as for 1,000), so a slow warehouse never delays a reader. A segment's
blocks are reserved before they are written (a full disk refuses the hit: never a crash) and it
grows as needed; the unused end of a segment left by a crash reads as NUL bytes, which replaying
skips. Before each batch the recorder starts a new journal segment; once every
hit of the old segment is recorded, the old segment is deleted — a segment whose hits could not
be recorded (warehouse down) is kept. On a graceful stop (SIGTERM, Ctrl-C) the server records
what is queued before it closes the warehouse (:func:`stop_recorder`); after a crash (SIGKILL,
out of memory) the next start replays the segments left by processes that are gone
(:func:`start_recorder`). Replaying is idempotent: a hit's event id is deterministic, so a hit
recorded just before the crash is not stored twice. (A process crash loses nothing; a power
failure can lose the last moments the operating system had not yet written to disk.)
"""

from __future__ import annotations

import base64
import logging
import mmap
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from personify import clock
from personify.delivery.tokens import project_key
from personify.engagement import Hit, TrackingClaim
from personify.engagement.record import record_many
from personify.engagement.tokens import Kind, Verifier, verifier
from personify.errors import ConfigError, PersonifyError
from personify.server.metrics import Counter, CounterChild, HistogramSeries
from personify.server.openapi import Content, Operation, operation
from personify.server.protocol import INSTANCE_HEADER
from personify.server.state import ServerState, state_of

log = logging.getLogger(__name__)
access_log = logging.getLogger("personify.server.access")
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_STORE = {"cache-control": "no-store, no-cache, must-revalidate, private", "pragma": "no-cache"}
PIXEL_ROUTE = "/o/{token}.gif"
CLICK_ROUTE = "/c/{token}"


def _counter(state: ServerState) -> Counter:
    return state.counter(
        "personify_engagement_hits_total",
        "Open and click tracking hits by kind and outcome (person, machine, unknown, repeat, "
        "invalid, failed, replayed).",
        ("kind", "outcome"),
    )


_NO_KEY = b""


def _key(state: ServerState) -> bytes:
    """The project's signing key, read once per server (``b""`` when there is none)."""
    found = state.extras.get("engagement.key")
    if found is None:
        try:
            found = project_key(state.session.project)
        except ConfigError:
            found = _NO_KEY
        state.extras["engagement.key"] = found
    assert isinstance(found, bytes)
    return found


def _verifier(state: ServerState) -> Verifier | None:
    """The tracking token verifier of the project's key (``None`` when there is no key)."""
    key = _key(state)
    return verifier(key) if key else None


def _claim(state: ServerState, kind: Kind, token: str) -> TrackingClaim | None:
    check = _verifier(state)
    return check(kind, token) if check is not None else None


# ------------------------------------------------------------------------------ the journal
RECORDER = "engagement.recorder"
BATCH = 2000
BATCH_SECONDS = 0.2
"""The recorder records at most this often (the hits of the interval together)."""
SEGMENT_BYTES = 1 << 20
"""A journal segment's first size (sparse until written; doubled when full)."""
STOP_SECONDS = 60.0
"""How long a graceful stop waits for the queued hits to be recorded (they stay in the journal
otherwise, for the next start)."""
_START = threading.Lock()
_Line = tuple[str, str, str, int | None, str | None, int, str, str | None, str]


def _line(hit: Hit) -> bytes:
    c = hit.claim
    at = int(hit.at.timestamp() * 1_000_000)
    fields: _Line = (c.kind, c.key, c.customer_id, c.link, c.url, at, hit.agent, hit.ip, hit.method)
    return msgspec.json.encode(fields) + b"\n"


def _unline(raw: bytes) -> Hit | None:
    try:
        kind, key, customer, link, url, at, agent, ip, method = msgspec.json.decode(raw)
        claim = TrackingClaim("click" if kind == "click" else "open", key, customer, link, url)
        when = datetime.fromtimestamp(at / 1_000_000, UTC)
        return Hit(claim, when, str(agent), ip, str(method))
    except (msgspec.DecodeError, ValueError, TypeError):
        return None  # a line cut short by a crash mid-write: nothing to replay


_LIVE: set[str] = set()
"""Journal tags of this process's running recorders (a segment of this pid with another tag was
left by an earlier process that had the same pid: a container restarted after a crash)."""


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Mark:
    """Every hit of ``segment`` is ahead of this in the queue (``None``: the end of a batch
    whose segment could not be cut, and stays)."""

    def __init__(self, segment: Path | None) -> None:
        self.segment = segment


_STOP = object()


class Recorder:
    """The journal and the recorder thread of one server (see the module docstring)."""

    def __init__(self, state: ServerState, folder: Path) -> None:
        self.state = state
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.tag = secrets.token_hex(4)
        _LIVE.add(self.tag)
        self.seq = 0
        self.lock = threading.Lock()
        self.hits: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.path, self.map = self._segment()
        self.end = 0
        """Bytes of the current segment written."""
        self.thread = threading.Thread(target=self._run, name="engagement-recorder", daemon=True)
        self.stopped = False

    def _segment(self) -> tuple[Path, mmap.mmap]:
        self.seq += 1
        path = self.folder / f"hits-{self.pid}-{self.tag}-{self.seq:08d}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # blocks reserved now: a full disk fails here (OSError), not as SIGBUS on a write
            os.posix_fallocate(fd, 0, SEGMENT_BYTES)
            return path, mmap.mmap(fd, SEGMENT_BYTES)  # shared: the page cache is the file's
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)  # the mapping keeps the file open

    def _grow(self, end: int) -> None:
        """Make room for ``end`` bytes in the current segment (blocks reserved first)."""
        size = max(2 * len(self.map), end)
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        self.map.resize(size)

    def add(self, hit: Hit) -> None:
        """Journal ``hit`` (in the operating system's page cache before this returns), then
        queue it."""
        line = _line(hit)
        with self.lock:
            start = self.end
            end = start + len(line)
            if end > len(self.map):
                self._grow(end)  # a full disk: OSError, the hit is neither answered nor queued
            self.map[start:end] = line
            self.end = end
            self.hits.put(hit)

    @staticmethod
    def _close(path: Path, segment: mmap.mmap, end: int) -> None:
        """Unmap a segment no one writes any more, cut to what was written."""
        segment.close()
        os.truncate(path, end)

    def _rotate(self) -> None:
        with self.lock:
            old, old_map, old_end = self.path, self.map, self.end
            try:
                self.path, self.map = self._segment()
            except OSError as e:  # a full disk: keep journalling into the current segment
                log.warning("no new tracking journal segment: %s", e.strerror)
                self.hits.put(_Mark(None))
                return
            self.end = 0
            self.hits.put(_Mark(old))
        self._close(old, old_map, old_end)

    def leftovers(self) -> list[Path]:
        """Journal segments of processes that are gone (a crash, a kill), including an earlier
        process that had this one's pid."""
        out = []
        for path in sorted(self.folder.glob("hits-*.jsonl")):
            parts = path.stem.split("-")
            if len(parts) < 3 or not parts[1].isdigit():
                continue
            pid = int(parts[1])
            mine = pid == os.getpid() and len(parts) == 4 and parts[2] in _LIVE
            if not mine and (pid == os.getpid() or not _alive(pid)):
                out.append(path)
        return out

    def _record(self, batch: list[Hit], outcome: str | None = None) -> bool:
        """Record ``batch``; ``False`` when the warehouse refused (the segment is kept)."""
        if not batch:
            return True
        counter = _counter(self.state)
        session = self.state.session
        try:
            done = record_many(session.warehouse, session.project, batch)
        except PersonifyError as e:
            log.warning("%d tracking hits not recorded yet: %s", len(batch), type(e).__name__)
            for hit in batch:
                counter.inc(kind=hit.claim.kind, outcome="failed")
            return False
        except Exception:  # keep the recorder alive whatever happens; the log has the type
            log.exception("tracking hits not recorded yet")
            return False
        for hit, result in zip(batch, done, strict=True):
            if outcome is not None:
                kind = outcome
            elif result.message_id is None:
                kind = "unknown"
            elif not result.new:
                kind = "repeat"
            else:
                kind = "machine" if result.machine else "person"
            counter.inc(kind=hit.claim.kind, outcome=kind)
        return True

    def replay(self, segments: Iterable[Path]) -> int:
        """Record the hits of ``segments`` (left by a crash); delete each one recorded."""
        total = 0
        for path in segments:
            lines = path.read_bytes().rstrip(b"\0").splitlines()  # a crash leaves NUL bytes
            hits = [h for h in map(_unline, lines) if h is not None]
            ok = all(
                self._record(hits[i : i + BATCH], "replayed") for i in range(0, len(hits), BATCH)
            )
            if ok:
                path.unlink(missing_ok=True)
                total += len(hits)
        if total:
            log.info("replayed %d tracking hits journalled before a crash", total)
        return total

    def _run(self) -> None:
        self.replay(self.leftovers())
        stopping = False
        started = 0.0
        while not stopping:
            first = self.hits.get()
            if first is _STOP:
                break
            if isinstance(first, _Mark):
                continue
            wait = started + BATCH_SECONDS - time.monotonic()
            if wait > 0:  # the hits of the next moments join this batch (not after a stop)
                time.sleep(wait)
            started = time.monotonic()
            self._rotate()
            pending: list[Hit] = [first]
            ok = True
            while True:
                item = self.hits.get()
                if isinstance(item, _Mark):
                    break
                if item is _STOP:
                    stopping = True
                    continue
                pending.append(item)
                if len(pending) >= BATCH:
                    ok = self._record(pending) and ok
                    pending = []
            ok = self._record(pending) and ok
            if ok and item.segment is not None:
                item.segment.unlink(missing_ok=True)
        with self.lock:
            self._close(self.path, self.map, self.end)
            if self.end == 0:
                self.path.unlink(missing_ok=True)
            self.stopped = True
        _LIVE.discard(self.tag)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Record what is queued, then end the thread; ``False`` when it did not finish in
        ``timeout`` (the journal keeps the rest for the next start)."""
        self.hits.put(_STOP)
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_recorder(state: ServerState) -> Recorder:
    """This server's recorder (started on first use, or by ``personify serve`` at start so the
    hits a crash left in the journal are recorded at once)."""
    found = state.extras.get(RECORDER)
    if found is None:
        with _START:
            found = state.extras.get(RECORDER)
            if found is None:
                found = Recorder(state, state.session.project.state_dir / "engagement")
                found.thread.start()
                state.extras[RECORDER] = found
    assert isinstance(found, Recorder)
    return found


def stop_recorder(state: ServerState, timeout: float = STOP_SECONDS) -> None:
    """Record the queued hits before the warehouse closes (``personify serve`` on shutdown)."""
    found = state.extras.get(RECORDER)
    if isinstance(found, Recorder) and not found.stopped and not found.stop(timeout):
        log.warning("tracking hits still queued after %.0f s stay journalled", timeout)


# ----------------------------------------------------------------------------- answering
def _not_found(state: ServerState, kind: Kind) -> Response:
    _counter(state).inc(kind=kind, outcome="invalid")
    return Response("not found", status_code=404, media_type="text/plain", headers=_NO_STORE)


def _hit(state: ServerState, claim: TrackingClaim, agent: str, ip: str | None, method: str) -> None:
    start_recorder(state).add(Hit(claim, clock.now(), agent[:512], ip, method))


_TOKEN = Content("Not a valid tracking token.", {"type": "string"}, "text/plain")


@operation(
    Operation(
        summary="The open pixel",
        description="A 1×1 transparent GIF; records an `Email Opened` event for the message the "
        "signed token names (machine opens flagged).",
        tags=("engagement",),
        responses={200: Content("The pixel.", {"type": "string"}, "image/gif"), 404: _TOKEN},
    )
)
async def pixel(request: Request) -> Response:
    """``GET /o/{token}.gif`` (answered by :class:`FastTracking`; this is the documented
    route and the fallback)."""
    state = state_of(request)
    claim = _claim(state, "open", str(request.path_params["token"]))
    if claim is None:
        return _not_found(state, "open")
    client = request.client.host if request.client else None
    _hit(state, claim, request.headers.get("user-agent", ""), client, request.method)
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@operation(
    Operation(
        summary="A tracked link",
        description="Redirects (302) to the URL inside the signed token and records an "
        "`Email Link Clicked` event (scanner clicks flagged). Never redirects anywhere else.",
        tags=("engagement",),
        responses={302: Content("The redirect.", {"type": "string"}, "text/plain"), 404: _TOKEN},
    )
)
async def click(request: Request) -> Response:
    """``GET /c/{token}`` (see :func:`pixel`)."""
    state = state_of(request)
    claim = _claim(state, "click", str(request.path_params["token"]))
    if claim is None or claim.url is None:
        return _not_found(state, "click")
    client = request.client.host if request.client else None
    _hit(state, claim, request.headers.get("user-agent", ""), client, request.method)
    headers = {**_NO_STORE, "location": claim.url, "referrer-policy": "no-referrer"}
    return Response(b"", status_code=302, headers=headers)


def routes() -> list[BaseRoute]:
    """The tracking routes."""
    return [
        Route(PIXEL_ROUTE, pixel, methods=["GET", "HEAD"]),
        Route(CLICK_ROUTE, click, methods=["GET", "HEAD"]),
    ]


class FastTracking:
    """Answers ``GET``/``HEAD`` ``/o/{token}.gif`` and ``/c/{token}`` before the router (see
    the module docstring); everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        instance = (INSTANCE_HEADER.encode(), state.instance.encode())
        no_store = [(k.encode(), v.encode()) for k, v in _NO_STORE.items()]
        self.pixel_headers = [
            (b"content-type", b"image/gif"),
            (b"content-length", str(len(PIXEL)).encode()),
            *no_store,
            instance,
        ]
        self.redirect_headers = [
            (b"content-length", b"0"),
            (b"referrer-policy", b"no-referrer"),
            *no_store,
            instance,
        ]
        self.missing_headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"9"),
            *no_store,
            instance,
        ]
        # Starlette builds its middleware on the first request: the key is read then, as
        # _claim would; the recorder starts with the first hit, as _hit starts it
        self.verify = _verifier(state)
        self.recorder: Recorder | None = None
        self.observed: dict[tuple[str, str, int], _Observed] = {}

    def _observe(self, method: str, route: str, status: int) -> _Observed:
        """The request counter and latency series of one answer, bound on first use."""
        key = (method, route, status)
        found = self.observed.get(key)
        if found is None:
            state = self.state
            found = self.observed[key] = (
                state.requests.child(method=method, route=route, status=str(status)),
                state.latency.child(route=route),
            )
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/o/") and path.endswith(".gif") and path.count("/") == 2:
            kind: Kind = "open"
            token, route = path[3:-4], PIXEL_ROUTE
        elif path.startswith("/c/") and path.count("/") == 2:
            kind, token, route = "click", path[3:], CLICK_ROUTE
        else:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD") or not token:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        check = self.verify
        claim = check(kind, token) if check is not None else None
        if claim is None or (kind == "click" and claim.url is None):
            _counter(self.state).inc(kind=kind, outcome="invalid")
            status, headers, body = 404, self.missing_headers, b"not found"
        else:
            agent = ""
            for name, value in scope["headers"]:
                if name == b"user-agent":
                    agent = value.decode("latin-1")[:512]
                    break
            client = scope.get("client")
            recorder = self.recorder or self._start()
            recorder.add(Hit(claim, clock.now(), agent, client[0] if client else None, method))
            if kind == "open":
                status, headers, body = 200, self.pixel_headers, PIXEL
            else:
                assert claim.url is not None
                location = (b"location", claim.url.encode("utf-8"))
                status, headers, body = 302, [location, *self.redirect_headers], b""
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        seconds = time.perf_counter() - started
        count, latency = self._observe(method, route, status)
        count.inc()
        latency.observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %d %.1fms", method, route, status, seconds * 1000)

    def _start(self) -> Recorder:
        self.recorder = start_recorder(self.state)
        return self.recorder


_Observed = tuple[CounterChild, HistogramSeries]
