"""Local time in the customer's time zone: ``wait: {until: "09:00"}`` and quiet hours.

A customer's zone is ``customers.timezone`` when it names a known IANA zone (in any letter case:
``europe/paris``) or a fixed UTC offset as CRMs write them (``+09:00``, ``-0530``, ``UTC+2``,
``GMT-5``), else the project's ``timezone``. Wall-clock times that do not exist (inside a DST
gap) move forward by the gap (02:30 → 03:30); ambiguous ones (the repeated hour) take the first
occurrence (PEP 495).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


@functools.cache
def _by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    known = _by_lower_name().get(name.lower())
    if known is not None:
        return ZoneInfo(known)
    offset = _OFFSET.match(name)
    if offset is None:
        return None
    sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3) or 0)
    if hours > 14 or minutes >= 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def zone(name: str | None, *, fallback: str) -> tzinfo:
    """The zone called ``name``, or ``fallback``'s when ``name`` is empty or unknown."""
    found = _zone(name.strip()) if name and name.strip() else None
    return found or _zone(fallback) or ZoneInfo("UTC")


def _at(day: datetime, clock_time: time, tz: tzinfo) -> datetime:
    """The UTC instant of ``clock_time`` on ``day``'s date in ``tz``."""
    return datetime.combine(day.date(), clock_time, tzinfo=tz).astimezone(UTC)


def next_local_time(after: datetime, clock_time: time, tz: tzinfo) -> datetime:
    """The first instant at or after ``after`` (aware) when the wall clock in ``tz`` reads
    ``clock_time`` — in UTC."""
    local = after.astimezone(tz)
    candidate = _at(local, clock_time, tz)
    if candidate < after:
        candidate = _at(local + timedelta(days=1), clock_time, tz)
    return candidate


def quiet_until(instant: datetime, start: time, end: time, tz: tzinfo) -> datetime | None:
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
