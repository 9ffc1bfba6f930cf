"""A project opened for work: its configuration plus a lazily opened, migrated warehouse.

Sharing one warehouse inside ``personify serve``: DuckDB lets one process open a database file.
The server opens its :class:`Session` once and runs forwarded CLI commands in-process (see
:mod:`personify.cli.forward`) inside :func:`serving`. While that context variable is set,
:func:`open_session` on the same project (same folder, same warehouse URL) returns a session that
*borrows* the server's warehouse instead of opening the file again; closing a borrowed session
leaves the warehouse open. The variable is per context (thread / task), so nothing else in the
process is affected.

``PERSONIFY_LOCK_TIMEOUT`` (seconds, default 10) is how long a session waits for a warehouse file
that another process holds before raising :class:`~personify.errors.WarehouseBusy`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from personify.config import Project, load_project
from personify.errors import PersonifyError
from personify.warehouse import Warehouse, connect

LOCK_TIMEOUT_ENV = "PERSONIFY_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 10.0


def default_lock_timeout() -> float:
    """``PERSONIFY_LOCK_TIMEOUT`` in seconds when set (``0`` fails at once), else 10."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise PersonifyError(
            f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds",
            hint=f"set {LOCK_TIMEOUT_ENV} to e.g. 30, or unset it for the default (10)",
        )
    return value


class Session:
    """The project and its warehouse. One per process (the server shares it between threads)."""

    def __init__(
        self,
        project: Project,
        *,
        lock_timeout: float | None = None,
        warehouse: Warehouse | None = None,
    ) -> None:
        """``warehouse``: an already open warehouse to use (borrowed: :meth:`close` leaves it
        open). ``lock_timeout``: default from ``PERSONIFY_LOCK_TIMEOUT``."""
        self.project = project
        self.lock_timeout = default_lock_timeout() if lock_timeout is None else lock_timeout
        self._warehouse: Warehouse | None = warehouse
        self._owns_warehouse = warehouse is None
        if warehouse is not None:
            from personify.privacy.fields import attach  # encrypted customers columns

            attach(warehouse, project)
        self._lock = threading.Lock()

    @property
    def warehouse(self) -> Warehouse:
        """The project's warehouse, opened (and migrated) on first use."""
        with self._lock:
            if self._warehouse is None:
                self._warehouse = connect(
                    self.project.config.warehouse,
                    root=self.project.root,
                    lock_timeout=self.lock_timeout,
                )
                self._owns_warehouse = True
                from personify.privacy.fields import attach  # encrypted customers columns

                attach(self._warehouse, self.project)
            return self._warehouse

    def close(self) -> None:
        """Close the warehouse if this session opened it (a borrowed one stays open)."""
        with self._lock:
            if self._warehouse is not None and self._owns_warehouse:
                self._warehouse.close()
            self._warehouse = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_serving: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "personify_serving_session", default=None
)


@contextlib.contextmanager
def serving(session: Session) -> Iterator[Session]:
    """Inside the block (this context only), :func:`open_session` on ``session``'s project
    borrows its open warehouse. Used by ``personify serve`` to run forwarded commands."""
    token = _serving.set(session)
    try:
        yield session
    finally:
        _serving.reset(token)


def serving_session() -> Session | None:
    """The server's session when running inside :func:`serving`, else ``None``."""
    return _serving.get()


def open_session(directory: str | Path = ".", *, lock_timeout: float | None = None) -> Session:
    """Load the project in ``directory`` and return a session on it.

    Inside :func:`serving`, a project with the server's folder and warehouse URL gets a session
    borrowing the server's open warehouse (the project file itself is read afresh).
    """
    project = load_project(directory)
    host = _serving.get()
    if (
        host is not None
        and host.project.root == project.root
        and host.project.config.warehouse == project.config.warehouse
    ):
        return Session(project, lock_timeout=host.lock_timeout, warehouse=host.warehouse)
    return Session(project, lock_timeout=lock_timeout)
