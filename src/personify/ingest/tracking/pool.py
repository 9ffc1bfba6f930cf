"""Tracking batches normalized in helper processes, off the process that owns the warehouse.

Decoding and validating a batch (:func:`~personify.ingest.tracking.intake.normalize_all`) is pure
Python: ~20 µs of one core per event. In the serving process it holds the interpreter lock, and
the group writer (:mod:`.writer`) needs that lock back after every call into the warehouse — and
DuckDB's Python client takes it inside each statement to check for signals — so the writer spent
more than half of every commit *waiting for the lock* while the event loop normalized the next
requests (py-spy ``--native``, session 7): the commits, not the cores, set the rate.

:class:`NormalizerPool` hands a batch's raw events to a helper process instead — ``python -m
personify.ingest.tracking.pool FD``, a fresh interpreter (the serving process runs the
warehouse's threads, which a ``fork`` must not copy) talking over a socket pair. The event loop
writes each request to the socket and reads the answers itself, so the serving process gains no
thread and spends a few pickling microseconds a request. It keeps what needs its state — the write
key, the rate limit, the recent ids, the writer — and what comes back is the very
:class:`~personify.ingest.tracking.intake.Intake` the in-process path makes (a test pins it).

Small requests stay in process (the round trip costs more than normalizing a few events), and so
does every request while the helpers start, after one died (it is started again a few seconds
later) or when a helper cannot read the request's tracking plan (it changed in between): the pool
only ever makes answers faster, never different. A helper exits when its socket closes — with the
server, ``kill -9`` included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from personify.ingest.tracking.intake import Intake, normalize_all
from personify.ingest.tracking.messages import Envelope
from personify.ingest.tracking.normalize import Inputs
from personify.ingest.tracking.plan import PlanKey, plan_for

log = logging.getLogger("personify.ingest.tracking")

MIN_EVENTS: Final = 16
"""Requests with fewer events are normalized in process (a round trip costs more)."""
MAX_PROCESSES: Final = 4
"""Helper processes at most by default (:func:`default_processes`)."""
RESTART_AFTER: Final = 5.0
"""Seconds before a helper that died is started again."""
_HEAD: Final = struct.Struct("!I")
_OK, _FAILED, _READY = 0, 1, 2


def default_processes() -> int:
    """One helper per core beyond the first, at most :data:`MAX_PROCESSES`; none on one core.

    On two cores one helper is worth its core: the serving process then uses under one core
    (its three busy threads at 40, 26 and 23 % of a core at 27k events/s) — what holds its
    rate back is the interpreter lock's hand-offs, not CPU — and taking the normalizing out of
    it shortened the group commits from ~37 to ~26 ms: 22.7k events/s on average against 19.2k
    without (12 and 6 runs in the same hour, ahead in 3 of 4 direct pairs;
    ``benchmarks/RESULTS.md``, tracking, session 8)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(MAX_PROCESSES, (cores or 1) - 1))


class HelperFailed(Exception):
    """A helper could not answer (it died, or failed on the request): normalize in process."""


class _Helper:
    """One helper process and the event loop's end of its socket (read and written by the loop's
    own callbacks: no thread, no stream objects to outlive the loop)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(  # noqa: S603 (our interpreter, our module)
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self.socket = ours
        self.waiting: collections.deque[asyncio.Future[Intake]] = collections.deque()
        self.ready = False
        """It said it is ready (it has imported what it needs)."""
        self.dead = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in = bytearray()
        self._out = bytearray()

    def attach(self) -> None:
        """Read its answers on the running loop from now on."""
        loop = asyncio.get_running_loop()
        if self._loop is loop or self.dead:
            return
        self._detach()
        self._loop = loop
        loop.add_reader(self.socket.fileno(), self._readable)

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.socket.fileno())
            loop.remove_writer(self.socket.fileno())

    def send(self, payload: bytes) -> asyncio.Future[Intake]:
        """Send one request; the future gets its answer."""
        assert self._loop is not None
        future: asyncio.Future[Intake] = self._loop.create_future()
        self.waiting.append(future)
        data = _HEAD.pack(len(payload)) + payload
        if self._out:  # earlier requests still queued: keep the order
            self._out += data
            return future
        try:
            sent = self.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost()
            return future
        if sent < len(data):
            self._out += data[sent:]
            self._loop.add_writer(self.socket.fileno(), self._writable)
        return future

    def _writable(self) -> None:
        try:
            sent = self.socket.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._lost()
            return
        del self._out[:sent]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self.socket.fileno())

    def _readable(self) -> None:
        try:
            chunk = self.socket.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost()
            return
        buffer = self._in
        buffer += chunk
        while len(buffer) >= _HEAD.size:
            (size,) = _HEAD.unpack_from(buffer)
            if len(buffer) < _HEAD.size + size:
                break
            body = bytes(buffer[_HEAD.size : _HEAD.size + size])
            del buffer[: _HEAD.size + size]
            self._answered(body)

    def _answered(self, body: bytes) -> None:
        if body[0] == _READY:
            self.ready = True
            return
        if not self.waiting:
            log.warning("a tracking normalizer answered a request it was not sent")
            self._lost()
            return
        future = self.waiting.popleft()
        if future.done():
            return
        if body[0] != _OK:
            future.set_exception(HelperFailed(body[1:].decode("utf-8", "replace")))
            return
        try:
            # a private socket pair to our own child: nobody else can write to it
            future.set_result(pickle.loads(memoryview(body)[1:]))  # noqa: S301
        except Exception as e:  # an answer that does not unpickle: never expected
            future.set_exception(HelperFailed(f"unreadable answer ({type(e).__name__})"))

    def _lost(self) -> None:
        """The helper is gone: hand its waiting requests back to the callers."""
        self._detach()
        self.dead = True
        if self.process.poll() is None:
            self.process.kill()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(HelperFailed("the helper process ended"))

    def close(self) -> None:
        self._detach()
        self.dead = True
        self.socket.close()  # the helper reads the end of its socket and exits
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(HelperFailed("the pool closed"))


class NormalizerPool:
    """Helper processes normalizing tracking batches (see the module doc)."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a pool needs at least one process")
        self.processes = processes
        self.offloaded = 0
        """Requests the helpers normalized."""
        self.in_process = 0
        """Requests of pool size normalized in process instead (helpers starting or gone)."""
        self._helpers: list[_Helper | None] = [_Helper() for _ in range(processes)]
        self._died_at = [0.0] * processes
        self._closed = False

    @property
    def ready(self) -> bool:
        """Every helper is running and has answered once."""
        return all(h is not None and h.ready and not h.dead for h in self._helpers)

    async def started(self, timeout: float = 60.0) -> bool:
        """Wait until every helper is ready (``False`` after ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for helper in self._helpers:
            if helper is not None:
                helper.attach()
        while not self.ready and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return self.ready

    @property
    def pids(self) -> list[int]:
        """The helper processes running now."""
        return [h.process.pid for h in self._helpers if h is not None and not h.dead]

    def _pick(self) -> _Helper | None:
        best: _Helper | None = None
        for i, helper in enumerate(self._helpers):
            if helper is not None and helper.dead:
                helper.close()
                self._helpers[i], self._died_at[i] = None, time.monotonic()
                log.warning("a tracking normalizer process ended; it starts again shortly")
                helper = None
            if helper is None:
                if not self._closed and time.monotonic() - self._died_at[i] > RESTART_AFTER:
                    helper = self._helpers[i] = _Helper()
                else:
                    continue
            if best is None or len(helper.waiting) < len(best.waiting):
                best = helper
        return best

    async def normalize(
        self,
        raws: Sequence[bytes] | bytes,
        inputs: Inputs,
        plan: PlanKey | None,
        *,
        prefix: str,
        events: int | None = None,
    ) -> Intake | None:
        """The request normalized by a helper, or ``None``: do it in process (too small, no
        helper ready, the helper failed). ``raws``: the events' raw JSON — or, cheaper to send,
        the whole ``/v1/batch`` body (its ``batch`` holding ``events`` events), which the
        helper decodes again."""
        count = len(raws) if events is None else events
        if count < MIN_EVENTS or self._closed:
            return None
        helper = self._pick()
        if helper is None:
            self.in_process += 1
            return None
        helper.attach()
        if not helper.ready:
            self.in_process += 1  # still starting (importing)
            return None
        bare = dataclasses.replace(inputs, plan=None)  # the helper reads the plan by its key
        sent = raws if isinstance(raws, bytes) else list(raws)
        payload = pickle.dumps((sent, bare, plan, prefix), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            intake = await helper.send(payload)
        except HelperFailed as e:
            log.debug("normalizing in process (%s)", e)
            self.in_process += 1
            return None
        self.offloaded += 1
        return intake

    def close(self) -> None:
        """Stop the helpers (their sockets close: each exits)."""
        self._closed = True
        for helper in self._helpers:
            if helper is not None:
                helper.close()
        self._helpers = [None] * self.processes


def _answer(request: bytes) -> bytes:
    try:
        raws, inputs, plan, prefix = pickle.loads(request)  # noqa: S301 (our server only)
        if isinstance(raws, bytes):  # a whole batch body (decoded by the server already)
            raws = [bytes(raw) for raw in msgspec.json.decode(raws, type=Envelope).batch]
        if plan is not None:
            inputs = dataclasses.replace(inputs, plan=plan_for(plan))
        intake = normalize_all(raws, inputs, prefix=prefix)
        return bytes([_OK]) + pickle.dumps(intake, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # the plan changed under us …: the server normalizes it itself
        return bytes([_FAILED]) + type(e).__name__.encode()


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except ConnectionResetError:  # the server closed us with data unread: it is stopping
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def helper_main(fd: int) -> None:
    """A helper's life: answer each request on the socket ``fd`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    with socket.socket(fileno=fd) as sock:
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            ready = bytes([_READY])
            sock.sendall(_HEAD.pack(len(ready)) + ready)
        while True:
            head = _recv_exactly(sock, _HEAD.size)
            if head is None:
                return
            request = _recv_exactly(sock, _HEAD.unpack(head)[0])
            if request is None:
                return
            answer = _answer(request)
            with contextlib.suppress(OSError):
                sock.sendall(_HEAD.pack(len(answer)) + answer)


def _main(argv: list[str]) -> Any:
    if len(argv) != 1 or not argv[0].isdigit():
        return "usage: python -m personify.ingest.tracking.pool FD (started by personify serve)"
    helper_main(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
