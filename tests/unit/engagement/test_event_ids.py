"""A hit's event id: deterministic, the same for the same client within one UTC minute, and
stable across versions (ids already stored must keep deduplicating replays and re-fetches)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from personify.engagement import Hit, TrackingClaim
from personify.engagement.record import event_id


def _spelled_out(hit: Hit) -> str:
    """The id as it was first defined: the UTC minute by ``astimezone`` and field formatting."""
    c, t = hit.claim, hit.at.astimezone(UTC)
    minute = f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}"
    parts = (c.kind, c.key, str(c.link), hit.agent, hit.ip or "", hit.method.upper(), minute)
    return "email-" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]


@given(
    at=st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7, minutes=-30))]),
    ),
    click=st.booleans(),
    agent=st.text(max_size=20),
    ip=st.none() | st.just("203.0.113.9"),
    method=st.sampled_from(["GET", "head"]),
)
def test_event_ids_are_the_spelled_out_definition(
    at: datetime, click: bool, agent: str, ip: str | None, method: str
) -> None:
    claim = (
        TrackingClaim("click", "m-1", "c-1", 2, "https://shop.example/")
        if click
        else TrackingClaim("open", "m-1", "c-1")
    )
    hit = Hit(claim, at, agent, ip, method)
    assert event_id(hit) == _spelled_out(hit)


def test_one_client_within_a_minute_is_one_event() -> None:
    claim = TrackingClaim("open", "m-1", "c-1")
    at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    ids = {event_id(Hit(claim, at + timedelta(seconds=s), "UA", "198.51.100.1")) for s in (0, 59)}
    assert len(ids) == 1
    assert event_id(Hit(claim, at + timedelta(seconds=60), "UA", "198.51.100.1")) not in ids
