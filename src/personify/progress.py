"""The progress callback long-running work reports through (the CLI draws it as bars)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""``progress(description, done, total)`` — called as work advances; ``total`` 0 if unknown."""
