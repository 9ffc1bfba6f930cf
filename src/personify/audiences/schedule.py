"""Durations (``14d``, ``36h``) and segment refresh schedules (``real-time``, ``every 15m`` …).

A segment's ``refresh`` says when ``personify run`` recomputes it:

- ``real-time`` (the default): every run (and, with ``personify serve``, whenever asked);
- ``every 15m`` / ``every 6h`` / ``every 1d`` (also ``hourly``, ``daily``, ``weekly``): when the
  last refresh is at least that old at ``--now``;
- ``manual``: only ``personify segments refresh NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

_DURATION = re.compile(
    r"^\s*(\d+)\s*(s|sec|secs|m|min|mins|h|hour|hours|d|day|days|w|week|weeks)\s*$"
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ALIASES = {"hourly": "every 1h", "daily": "every 1d", "weekly": "every 1w"}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``36h``, ``14d``, ``2w`` (also ``14 days`` …) as a positive timedelta.

    Raises ``ValueError`` saying what is expected."""
    match = _DURATION.match(text.lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30m, 36h, 14d or 2w")
    unit = _UNITS[match.group(2)[0]]
    return timedelta(**{unit: int(match.group(1))})


@dataclass(frozen=True)
class Refresh:
    """When a segment is recomputed."""

    mode: Literal["real-time", "every", "manual"]
    every: timedelta | None = None

    def __str__(self) -> str:
        if self.mode == "every" and self.every is not None:
            return f"every {_format(self.every)}"
        return self.mode

    def is_due(self, last: datetime | None, now: datetime) -> bool:
        """Whether a run at ``now`` refreshes a segment last refreshed at ``last``.

        A ``last`` later than ``now`` (a run replayed in the past) counts as due."""
        if self.mode == "manual":
            return False
        if self.mode == "real-time" or last is None or self.every is None:
            return True
        return not (last <= now < last + self.every)


REAL_TIME = Refresh("real-time")


def parse_refresh(text: str) -> Refresh:
    """``real-time``, ``every DURATION``, ``hourly``/``daily``/``weekly`` or ``manual``."""
    value = _ALIASES.get(text.strip().lower(), text.strip().lower())
    if value in {"real-time", "realtime", "always"}:
        return REAL_TIME
    if value == "manual":
        return Refresh("manual")
    if value.startswith("every "):
        return Refresh("every", parse_duration(value[len("every ") :]))
    raise ValueError(
        f"{text!r} is not a refresh schedule: write real-time, every 15m, hourly, daily or manual"
    )


def _format(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
