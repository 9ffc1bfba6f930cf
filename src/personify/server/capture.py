"""Per-command capture of ``sys.stdin``/``stdout``/``stderr`` inside the server.

Commands print with ``print``, Rich and click, all of which look up ``sys.stdout`` when they
write. :func:`capture` swaps the three standard streams for routers that send each write to the
streams of the *current context* (a context variable) when one is set, and to the original stream
otherwise. So a forwarded command's output lands in its own buffers while every other thread —
uvicorn's loop, concurrent requests — keeps writing where it did. Captured stdin is empty: a
forwarded command cannot prompt (``typer.confirm`` gets end-of-file and aborts).

Threads a command starts itself do not inherit the context: their output goes to the server's
real streams.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO, cast

_targets: contextvars.ContextVar[tuple[TextIO, TextIO, TextIO] | None] = contextvars.ContextVar(
    "personify_captured_streams", default=None
)
_install_lock = threading.Lock()
_installed: list[tuple[TextIO, TextIO, TextIO]] = []  # the originals, while installed
_depth = 0


class _Router(io.TextIOBase):
    """A text stream forwarding to the current context's stream number ``index``."""

    def __init__(self, index: int, fallback: TextIO) -> None:
        super().__init__()
        self._index = index
        self._fallback = fallback

    def target(self) -> TextIO:
        streams = _targets.get()
        return streams[self._index] if streams is not None else self._fallback

    def write(self, s: str) -> int:
        return self.target().write(s)

    def writelines(self, lines: Any) -> None:
        self.target().writelines(lines)

    def read(self, size: int | None = -1) -> str:
        return self.target().read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return self.target().readline(-1 if size is None else size)

    def flush(self) -> None:
        self.target().flush()

    def isatty(self) -> bool:
        return self.target().isatty()

    def fileno(self) -> int:
        return self.target().fileno()

    def readable(self) -> bool:
        return self.target().readable()

    def writable(self) -> bool:
        return self.target().writable()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target(), "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target(), "errors", None) or "strict"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target(), name)


def _install() -> None:
    global _depth
    with _install_lock:
        if _depth == 0:
            originals = (sys.stdin, sys.stdout, sys.stderr)
            _installed.append(originals)
            sys.stdin, sys.stdout, sys.stderr = (
                cast(TextIO, _Router(i, stream)) for i, stream in enumerate(originals)
            )
        _depth += 1


def _uninstall() -> None:
    global _depth
    with _install_lock:
        _depth -= 1
        if _depth == 0:
            originals = _installed.pop()
            current = (sys.stdin, sys.stdout, sys.stderr)
            restored = [
                orig if isinstance(now, _Router) else now
                for orig, now in zip(originals, current, strict=True)
            ]
            sys.stdin, sys.stdout, sys.stderr = restored


@contextlib.contextmanager
def capture(stdout: TextIO, stderr: TextIO, stdin: TextIO | None = None) -> Iterator[None]:
    """Inside the block, this context's standard streams are ``stdout``, ``stderr`` and
    ``stdin`` (default: empty)."""
    _install()
    token = _targets.set((stdin if stdin is not None else io.StringIO(""), stdout, stderr))
    try:
        yield
    finally:
        _targets.reset(token)
        _uninstall()
