"""Audiences, discount codes and journeys (``audiences:``, ``discounts:``, ``journeys:``):
who is selected, what codes are worth, and how the send loop paces email.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from personify.config.base import _Base


class AudienceSettings(_Base, frozen=True):
    """Segments (``segments/*.sql``) and rules (``rules/*.yml``): where they live, the limits
    their SQL runs under."""

    segments: str = "segments"
    """Folder of segment files (``*.sql``), relative to the project."""
    rules: str = "rules"
    """Folder of rule files (``*.yml``), relative to the project."""
    dialect: str = "duckdb"
    """SQL dialect of segments and rule conditions whose file does not name one
    (``mysql``, ``postgres``, ``bigquery``, ``snowflake``, …)."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A segment query running longer than this is stopped (and the refresh fails)."""
    max_members: Annotated[int, msgspec.Meta(ge=1)] = 50_000_000
    """A segment returning more customers than this is refused (its memberships are kept)."""
    sample_size: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    """Rows shown by ``personify segments preview``."""
    purpose: str = "email_marketing"
    """Consent purpose counted as *sendable* in segment reports (see the ``sendable`` view)."""

    def __post_init__(self) -> None:
        if self.dialect == "duckdb":  # the default: no need to load sqlglot (~0.5 s) to know it
            return
        import sqlglot

        try:
            sqlglot.Dialect.get_or_raise(self.dialect)
        except ValueError:
            raise ValueError(
                f"unknown SQL dialect {self.dialect!r} (e.g. duckdb, mysql, postgres, bigquery, "
                "snowflake)"
            ) from None


# ------------------------------------------------------------------------------------- discounts
class DiscountTier(_Base, frozen=True):
    """One step of a campaign's value ladder: customers at or above ``min_engagement`` get it."""

    min_engagement: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.0
    """Lowest ``customers.engagement_score`` (0–100) this tier applies to; a customer without a
    score counts as 0."""
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    """A percentage off the order (``10`` for 10 % off)."""
    amount: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Or a fixed amount off, in the campaign's ``currency``."""

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent or amount")


_DISCOUNT_DURATION = re.compile(
    r"^\s*0*[1-9][0-9]*\s*(s|sec|secs|m|min|mins|h|hour|hours|d|day|days|w|week|weeks)\s*$"
)
"""A duration (``expires_in``, ``per`` …): a positive whole number of seconds, minutes, hours,
days or weeks, as :func:`personify.audiences.schedule.parse_duration` reads it."""


def _default_tiers() -> tuple[DiscountTier, ...]:
    return (
        DiscountTier(min_engagement=70, percent=5),
        DiscountTier(min_engagement=30, percent=10),
        DiscountTier(percent=15),
    )


class DiscountCampaign(_Base, frozen=True):
    """A kind of personal discount code (e.g. ``cart_rescue``): how long its codes live and what
    they are worth."""

    expires_in: str = "7d"
    """How long a code stays valid after it is issued (``48h``, ``7d``, ``2w``)."""
    tiers: tuple[DiscountTier, ...] = msgspec.field(default_factory=_default_tiers)
    """The value ladder, checked in order: the first tier whose ``min_engagement`` the customer's
    ``engagement_score`` reaches wins. The last tier should have no ``min_engagement`` so that
    everyone gets a code."""
    currency: str = "EUR"
    """Currency of ``amount`` tiers (shown in the code's label): an ISO 4217 code (``EUR``,
    ``USD``), checked against Babel's list."""
    renew_within: str = "24h"
    """A code asked for again (an email retried after its server deferred it for days) that has
    expired, or expires within this (at most half of ``expires_in``), gets ``expires_in`` more
    from then — the same code: an email never goes out carrying a dead one."""

    def __post_init__(self) -> None:
        for name in ("expires_in", "renew_within"):
            value = getattr(self, name)
            if not _DISCOUNT_DURATION.match(value.strip().lower()):
                raise ValueError(f"{name}: {value!r} is not a duration: write e.g. 48h, 7d or 2w")
        if not self.tiers:
            raise ValueError("a campaign needs at least one tier")
        _check_currency(self.currency)


def _check_currency(code: str) -> None:
    """Refuse ``code`` unless it is an ISO 4217 currency code Babel knows (``EUR``): a wrong one
    would only fail when a code's label is first written, mid-send."""
    from babel.numbers import list_currencies

    known = list_currencies()
    if code in known:
        return
    said = f"currency: {code!r} is not an ISO 4217 currency code"
    if code.strip().upper() in known:
        raise ValueError(f"{said}: write it {code.strip().upper()!r} (capitals)")
    raise ValueError(f"{said}: write a three-letter code such as EUR, USD or GBP")


def _default_discounts() -> dict[str, DiscountCampaign]:
    return {"cart_rescue": DiscountCampaign()}


# -------------------------------------------------------------------------------------- journeys
_CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class FrequencyCap(_Base, frozen=True):
    """At most ``max`` emails of capped journeys per customer within ``per`` (across journeys)."""

    max: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Emails allowed in the window."""
    per: str = "24h"
    """The sliding window (``24h``, ``7d``)."""

    def __post_init__(self) -> None:
        if not _DISCOUNT_DURATION.match(self.per.strip().lower()):
            raise ValueError(f"{self.per!r} is not a duration: write e.g. 24h or 7d")


class QuietHours(_Base, frozen=True):
    """Hours of the customer's local day when no email is sent: it waits until they end."""

    start: Annotated[str, msgspec.Meta(pattern=_CLOCK_TIME)] = "21:00"
    """Local time (``HH:MM``) the quiet period starts."""
    end: Annotated[str, msgspec.Meta(pattern=_CLOCK_TIME)] = "08:00"
    """Local time (``HH:MM``) it ends (may be on the next day)."""


class JourneySettings(_Base, frozen=True):
    """Journeys (``journeys/*.yml``) and the send loop: caps, quiet hours, batch size."""

    folder: str = "journeys"
    """Folder of journey files (``*.yml``), relative to the project."""
    purpose: str = "email_marketing"
    """Consent purpose of journey emails whose journey does not name one."""
    lookback: str = "24h"
    """Default ``trigger.within``: how far back a trigger event or audience change may lie for
    a customer to enter (so a new project does not email about carts abandoned months ago)."""
    frequency_cap: FrequencyCap | None = FrequencyCap()
    """Across journeys, per customer (journeys with ``capped: false`` neither count nor obey);
    ``null``: no cap."""
    quiet_hours: QuietHours | None = None
    """In the customer's time zone (``customers.timezone``, else the project's): emails due in
    them are held and sent when they end. Absent: none."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    """Messages decided, rendered and sent per batch; statuses are committed per batch."""

    def __post_init__(self) -> None:
        if not _DISCOUNT_DURATION.match(self.lookback.strip().lower()):
            raise ValueError(f"{self.lookback!r} is not a duration: write e.g. 24h or 7d")
