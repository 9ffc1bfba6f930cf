"""A project opened for work: its configuration plus a lazily opened, migrated warehouse."""

from __future__ import annotations

import threading
from pathlib import Path

from personify.config import Project, load_project
from personify.warehouse import Warehouse, connect


class Session:
    """The project and its warehouse. One per process (the server shares it between threads)."""

    def __init__(self, project: Project, *, lock_timeout: float = 10.0) -> None:
        self.project = project
        self.lock_timeout = lock_timeout
        self._warehouse: Warehouse | None = None
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
            return self._warehouse

    def close(self) -> None:
        with self._lock:
            if self._warehouse is not None:
                self._warehouse.close()
                self._warehouse = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(directory: str | Path = ".", *, lock_timeout: float = 10.0) -> Session:
    """Load the project in ``directory`` and return a session on it."""
    return Session(load_project(directory), lock_timeout=lock_timeout)
