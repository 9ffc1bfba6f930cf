"""``.personify/server.json``: which process serves a project, where, and with which token.

DuckDB lets one process open a warehouse file, so ``personify serve`` on such a project owns it and
other commands forward to the server. Two files in :attr:`Project.state_dir
<personify.config.Project.state_dir>` make that safe:

``server.lock``
    Held with an exclusive ``flock`` by the serving process for its whole life. The kernel drops
    the lock when the process dies, however it dies, so "is a server alive?" never depends on a
    PID that may have been reused. The file itself stays (deleting lock files invites races).
``server.json``
    :class:`ServerInfo` — pid, host, port, control token, start time — written atomically with
    mode 0600 (the token lets its reader run any command, so only the owner may read it) once
    the server is ready to accept connections, and removed on shutdown.

A reader (:func:`live_server`) trusts ``server.json`` only if its pid is alive and the lock is
held; otherwise the file is stale and is removed — under a shared lock, so that a server starting
at that moment can never lose its fresh file. Platforms without ``fcntl`` fall back to the pid.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import msgspec

from personify.errors import PersonifyError, Terminal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SERVER_FILE: Final = "server.json"
LOCK_FILE: Final = "server.lock"
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 (recognised, not bound)


class AlreadyServing(PersonifyError, Terminal):
    """Another ``personify serve`` already runs on this project."""


class ServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The content of ``server.json``."""

    pid: int
    """Process id of the server."""
    host: str
    """The address it listens on, as given to ``--host``."""
    port: int
    """The TCP port it listens on (the real one when ``--port 0`` was asked)."""
    token: str
    """Bearer token for the control channel. Never log it."""
    started_at: str
    """When the server started (ISO 8601, UTC)."""
    instance: str
    """Random id of this server process (not a secret), echoed in a response header."""
    project: str = ""
    """The project folder it serves."""
    version: str = ""
    """Personify version of the server."""

    @property
    def url(self) -> str:
        """Base URL a local client connects to (a wildcard address becomes loopback)."""
        host = self.host
        if host in _WILDCARDS:
            host = "127.0.0.1" if "." in host or not host else "::1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def describe(self) -> str:
        """ "process 123 on http://127.0.0.1:8787, started 2026-…" (no token)."""
        return f"process {self.pid} on {self.url}, started {self.started_at}"

    def __repr__(self) -> str:
        return (
            f"ServerInfo(pid={self.pid}, host={self.host!r}, port={self.port}, token='***', "
            f"started_at={self.started_at!r}, instance={self.instance!r})"
        )


def new_token() -> str:
    """A fresh control token (256 random bits)."""
    return secrets.token_urlsafe(32)


def new_instance_id() -> str:
    """A fresh instance id for a server process."""
    return secrets.token_hex(8)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError as e:  # pragma: no cover - e.g. Windows
        return e.errno != errno.ESRCH
    return True


def read_server_info(state_dir: Path) -> ServerInfo | None:
    """``server.json`` in ``state_dir``, or ``None`` when absent or unreadable."""
    try:
        data = (state_dir / SERVER_FILE).read_bytes()
    except OSError:
        return None
    try:
        return msgspec.json.decode(data, type=ServerInfo)
    except msgspec.DecodeError:
        return None


@contextlib.contextmanager
def _flock(state_dir: Path, *, exclusive: bool) -> Iterator[bool | None]:
    """Try to take the server lock without waiting: yields True (taken), False (someone holds
    it) or None (no ``fcntl`` here, or no lock file: nobody ever served)."""
    path = state_dir / LOCK_FILE
    if fcntl is None or not path.exists():
        yield None
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without flock (some network mounts): cannot tell
            yield None
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_held(state_dir: Path) -> bool | None:
    """Whether a live server holds the project's server lock (``None``: cannot tell here)."""
    with _flock(state_dir, exclusive=False) as taken:
        return None if taken is None else not taken


def _is_live(state_dir: Path, info: ServerInfo) -> bool:
    if not pid_alive(info.pid):
        return False
    held = lock_held(state_dir)
    return held is not False


def discard_if_stale(state_dir: Path, info: ServerInfo | None) -> bool:
    """Remove ``server.json`` if it is still ``info`` (or unreadable, for ``None``) and no server
    holds the lock. Returns whether it was removed."""
    with _flock(state_dir, exclusive=False) as taken:
        if taken is False:
            return False  # a server holds the lock: the file is (or is about to be) its own
        current = read_server_info(state_dir)
        if info is not None and (current is None or current.instance != info.instance):
            return False
        if taken is None and current is not None and pid_alive(current.pid):
            return False
        with contextlib.suppress(FileNotFoundError):
            (state_dir / SERVER_FILE).unlink()
        return True


def live_server(state_dir: Path, *, wait: float = 0.0) -> ServerInfo | None:
    """The server serving this project, if one is alive; a stale ``server.json`` is removed.

    When the lock is held but ``server.json`` is not there yet (a server starting up, opening and
    migrating the warehouse), waits up to ``wait`` seconds for it.
    """
    deadline = time.monotonic() + wait
    while True:
        info = read_server_info(state_dir)
        if info is not None:
            if _is_live(state_dir, info):
                return info
            discard_if_stale(state_dir, info)
            return None
        if (state_dir / SERVER_FILE).exists():  # unreadable: half-written by hand, or corrupt
            discard_if_stale(state_dir, None)
            return None
        if lock_held(state_dir) is not True or time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class ServerLock:
    """What the serving process holds: the exclusive lock and, once published, ``server.json``.

    Use as a context manager, or :meth:`acquire` then :meth:`release`.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None
        self._published: ServerInfo | None = None

    @property
    def file(self) -> Path:
        return self.state_dir / SERVER_FILE

    def acquire(self, *, timeout: float = 2.0) -> None:
        """Take the lock, or raise :class:`AlreadyServing` naming the running server.

        Retries for ``timeout`` seconds: clients take the lock shared for an instant to check it.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows: the pid is all there is
            self._check_pid()
            return
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                info = read_server_info(self.state_dir)
                if (info is not None and pid_alive(info.pid)) or time.monotonic() >= deadline:
                    os.close(fd)
                    raise self._refusal(info) from None
                time.sleep(0.05)  # a client checking the lock, or a server starting
            except OSError:  # no flock on this file system: the pid is all there is
                os.close(fd)
                self._check_pid()
                return
        self._fd = fd

    def _check_pid(self) -> None:
        info = read_server_info(self.state_dir)
        if info is not None and pid_alive(info.pid) and info.pid != os.getpid():
            raise self._refusal(info)

    def _refusal(self, info: ServerInfo | None) -> AlreadyServing:
        running = info.describe() if info else "a server that is still starting"
        return AlreadyServing(
            f"the project is already served by {running}",
            hint="use that server (other commands run through it), or stop it first",
        )

    def publish(self, info: ServerInfo) -> None:
        """Write ``server.json`` atomically, readable by its owner only (mode 0600)."""
        tmp = self.state_dir / f".{SERVER_FILE}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        stream: IO[bytes]
        with os.fdopen(fd, "wb") as stream:
            stream.write(msgspec.json.format(msgspec.json.encode(info)) + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.file)
        self._published = info

    def withdraw(self) -> None:
        """Remove ``server.json`` if it is still the one this process published."""
        if self._published is None:
            return
        current = read_server_info(self.state_dir)
        if current is not None and current.instance == self._published.instance:
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
        self._published = None

    def release(self) -> None:
        """Withdraw ``server.json`` and drop the lock."""
        self.withdraw()
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ServerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
