"""Template files read once per version: reading an unchanged file again costs a ``stat``.

:class:`~personify.messages.templates.TemplateStore` looks at its files — the template, its
sidecar, its layout and every partial it renders — before each batch, to know the version it
renders. :class:`TextFiles` keeps each file's text under its *signature* (``st_mtime_ns``,
``st_size``, ``st_ino``, ``st_dev``): the same signature, the same text, no read. Any edit
changes the modification time (a save by rename, as editors do, also the inode), so an edited
file is read again at the next look.

A file whose modification time is within :data:`RACY_NS` of now is read every time, not kept:
a filesystem's timestamps are coarse (a few milliseconds), and a second edit of the same size in
the same tick would otherwise go unseen (git's "racily clean" rule).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

T = TypeVar("T")

RACY_NS: Final = 2_000_000_000
"""Nanoseconds after its last modification during which a file is not kept (read each time)."""
LIMIT: Final = 4096
"""Files kept at most; beyond it the oldest are dropped."""
DERIVED_LIMIT: Final = 256
"""Texts a :class:`Derived` keeps a value for (each version of a file is a text of its own)."""

Signature = tuple[int, int, int, int]


def signature(st: os.stat_result) -> Signature:
    """What changes when a file does: modification time, size, inode, device."""
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class TextFiles:
    """UTF-8 text of files, read again only when their signature changed (thread-safe)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._seen: dict[str, tuple[Signature, str]] = {}
        self._lock = threading.Lock()
        self.reads = 0
        """Files actually read (for tests and benchmarks)."""

    def read(self, path: Path, st: os.stat_result | None = None) -> str:
        """The text of ``path`` now (``st``: its ``os.stat`` if just taken). Raises OSError
        (FileNotFoundError …) and UnicodeDecodeError as ``Path.read_text`` does."""
        st = os.stat(path) if st is None else st
        key = str(path)
        sig = signature(st)
        with self._lock:
            hit = self._seen.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        text = path.read_text(encoding="utf-8")
        self.reads += 1
        if time.time_ns() - st.st_mtime_ns > RACY_NS:
            with self._lock:
                if len(self._seen) >= self._limit:
                    self._seen.pop(next(iter(self._seen)))
                self._seen[key] = (sig, text)
        return text


class Derived(Generic[T]):
    """A value computed from a text (its front matter, the partials it names), kept by the
    text: the same text — the very string :class:`TextFiles` returns — costs a lookup."""

    def __init__(self, compute: Callable[[str], T], limit: int = DERIVED_LIMIT) -> None:
        self._compute = compute
        self._limit = limit
        self._values: dict[str, T] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> T:
        with self._lock:
            if text in self._values:
                return self._values[text]
        value = self._compute(text)
        with self._lock:
            if len(self._values) >= self._limit:
                self._values.pop(next(iter(self._values)))
            self._values[text] = value
        return value
