"""Rich progress bars behind the ``progress(description, done, total)`` callback stages take."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from personify.progress import Progress as ProgressCallback


@contextlib.contextmanager
def progress_bars(*, enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """Yield a callback that draws one bar per description (on stderr, only on a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(description: str, done: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = bars.add_task(description, total=total or None)
        bars.update(tasks[description], completed=done, total=total or None)

    with bars:
        yield update
