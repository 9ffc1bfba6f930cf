"""A total deadline for one request (``client.request_deadline``), beside httpx's timeouts.

httpx's ``timeout`` bounds each read, not a request: a server that sends a byte every few seconds
— its headers or its body — never times out, and the sync hangs. :class:`Deadline` holds, per
thread, the instant the request in flight must be done by; :func:`install` wraps the network
backend of the client's connection pools (the direct one and any proxy's) so that every connect,
read and write waits at most until then. Past it, the operation raises httpcore's timeout of its
kind, which httpx turns into its own :class:`httpx.TimeoutException`: the client treats it like
any timeout (retried with backoff, then :class:`~personify.http.errors.RestUnavailable`).

httpx has no public hook for this (encode/httpx#1450): the pools' ``_network_backend`` is set
after the client is made, so that proxies from the environment keep working.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx


class Deadline:
    """The instant (``time.monotonic()``) the current thread's request must be done by."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def within(self, seconds: float | None) -> Iterator[None]:
        """Run the block's I/O under a deadline ``seconds`` from now (``None``: none)."""
        at = self._local.at = None if seconds is None else time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.at = None
            self._local.missed = at is not None and time.monotonic() >= at

    def missed(self) -> bool:
        """Whether this thread's last block under :meth:`within` ended past its deadline."""
        return bool(getattr(self._local, "missed", False))

    def bound(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` cut to what is left of the deadline; raises ``error`` when none is."""
        at: float | None = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise error("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._stream, self._deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(
            self._stream.start_tls(ssl_context, server_hostname, bounded), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend, deadline: Deadline) -> None:
        self._backend, self._deadline = backend, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_unix_socket(path, bounded, socket_options)
        return _Stream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def install(client: httpx.Client, deadline: Deadline) -> int:
    """Put ``deadline`` under every connection pool of ``client``; returns how many pools."""
    transports = [client._transport, *client._mounts.values()]  # noqa: SLF001  (see the doc)
    done = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _Backend):
            typing.cast(Any, pool)._network_backend = _Backend(backend, deadline)
            done += 1
    return done
