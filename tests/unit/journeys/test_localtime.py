"""Local time in the customer's zone: waits until a wall-clock time, and quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from personify.journeys.localtime import next_local_time, quiet_until, zone

PARIS = zone("Europe/Paris", fallback="UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_next_local_time_today_tomorrow_and_exactly_now() -> None:
    assert next_local_time(utc(2026, 3, 2, 6), time(9), PARIS) == utc(2026, 3, 2, 8)
    assert next_local_time(utc(2026, 3, 2, 12), time(9), PARIS) == utc(2026, 3, 3, 8)
    assert next_local_time(utc(2026, 3, 2, 8), time(9), PARIS) == utc(2026, 3, 2, 8)


def test_next_local_time_across_daylight_saving() -> None:
    # Paris springs forward on 29 March 2026: 09:00 is 07:00 UTC from then on
    assert next_local_time(utc(2026, 3, 28, 12), time(9), PARIS) == utc(2026, 3, 29, 7)
    # 02:30 does not exist that night: moved forward by the gap (03:30 CEST)
    assert next_local_time(utc(2026, 3, 28, 12), time(2, 30), PARIS) == utc(2026, 3, 29, 1, 30)


def test_unknown_or_missing_zones_fall_back() -> None:
    assert zone("Mars/Olympus", fallback="Europe/Paris") == ZoneInfo("Europe/Paris")
    assert zone(None, fallback="Nowhere") == ZoneInfo("UTC")
    assert zone(" Asia/Tokyo ", fallback="UTC") == ZoneInfo("Asia/Tokyo")


def test_quiet_hours_over_midnight_and_within_a_day() -> None:
    night, morning = time(21), time(8)
    assert quiet_until(utc(2026, 3, 2, 22), night, morning, PARIS) == utc(2026, 3, 3, 7)
    assert quiet_until(utc(2026, 3, 2, 5), night, morning, PARIS) == utc(2026, 3, 2, 7)
    assert quiet_until(utc(2026, 3, 2, 12), night, morning, PARIS) is None
    assert quiet_until(utc(2026, 3, 2, 12), time(12), time(14), PARIS) == utc(2026, 3, 2, 13)
    assert quiet_until(utc(2026, 3, 2, 14), time(12), time(14), PARIS) is None  # 15:00 local
    assert quiet_until(utc(2026, 3, 2, 11), time(12), time(14), PARIS) == utc(2026, 3, 2, 13)
    assert quiet_until(utc(2026, 3, 2, 11), time(9), time(9), PARIS) is None


def test_zones_as_crms_write_them() -> None:
    """Lower-case IANA names and fixed UTC offsets are the customer's zone, not the fallback."""
    assert zone("europe/paris", fallback="UTC") == ZoneInfo("Europe/Paris")
    instant = datetime(2026, 1, 15, 12, tzinfo=UTC)
    for name, hours in [("+09:00", 9), ("-0530", -5.5), ("UTC+2", 2), ("GMT-5", -5), ("+1", 1)]:
        tz = zone(name, fallback="Europe/Paris")
        assert instant.astimezone(tz).utcoffset() == timedelta(hours=hours), name
    for wrong in ("+25:00", "+09:75", "UTC+", "Central Time"):
        assert zone(wrong, fallback="Asia/Tokyo") == ZoneInfo("Asia/Tokyo"), wrong
    # quiet hours 21:00–08:00 at +09:00: 13:00 UTC is 22:00 there, quiet until 08:00 (23:00 UTC)
    end = quiet_until(
        datetime(2026, 1, 15, 13, tzinfo=UTC), time(21), time(8), zone("+09:00", fallback="UTC")
    )
    assert end == datetime(2026, 1, 15, 23, tzinfo=UTC)
