"""Local time in the customer's time zone: ``wait: {until: "09:00"}`` and quiet hours.

A customer's zone is ``customers.timezone`` when it names a known IANA zone, else the project's
``timezone``. Wall-clock times that do not exist (inside a DST gap) move forward by the gap
(02:30 → 03:30); ambiguous ones (the repeated hour) take the first occurrence (PEP 495).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone(name: str | None, *, fallback: str) -> ZoneInfo:
    """The zone called ``name``, or ``fallback``'s when ``name`` is empty or unknown."""
    found = _zone(name.strip()) if name and name.strip() else None
    return found or _zone(fallback) or ZoneInfo("UTC")


def _at(day: datetime, clock_time: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of ``clock_time`` on ``day``'s date in ``tz``."""
    return datetime.combine(day.date(), clock_time, tzinfo=tz).astimezone(UTC)


def next_local_time(after: datetime, clock_time: time, tz: ZoneInfo) -> datetime:
    """The first instant at or after ``after`` (aware) when the wall clock in ``tz`` reads
    ``clock_time`` — in UTC."""
    local = after.astimezone(tz)
    candidate = _at(local, clock_time, tz)
    if candidate < after:
        candidate = _at(local + timedelta(days=1), clock_time, tz)
    return candidate


def quiet_until(instant: datetime, start: time, end: time, tz: ZoneInfo) -> datetime | None:
    """When ``instant`` falls in the quiet hours ``start``–``end`` (local, may span midnight) in
    ``tz``: the UTC instant they end. Otherwise ``None``."""
    if start == end:
        return None
    local = instant.astimezone(tz)
    now_t = local.time().replace(tzinfo=None)
    inside = start <= now_t < end if start < end else (now_t >= start or now_t < end)
    if not inside:
        return None
    return next_local_time(instant, end, tz)
