"""Email engagement: the shop's fortnightly campaigns, opened and clicked.

Thirteen campaigns went out every other week at 09:00 UTC, the last one yesterday, to every
customer whose marketing consent was in force at the time. Opens follow hours later, at
cohort-dependent rates (vip open about half, champions all of them, several times; dormant almost
none); some opens lead to a click on a product link. Rendered as Segment's ``Email Opened`` and
``Email Link Clicked`` events with the customer's ``userId``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from personify.demo._vocab import CATEGORIES
from personify.demo.catalog import DAY_MS, Catalog
from personify.demo.people import HOUR_MS, People

CAMPAIGNS: Final = 13
OPEN_RATE: Final = np.array([0.5, 0.22, 0.06, 0.35, 0.03, 0.0, 1.0])
"""Share of received emails opened, per cohort (see :data:`personify.demo.people.COHORTS`)."""
REOPENS: Final = np.array([0.15, 0.05, 0.0, 0.05, 0.0, 0.0, 1.5])
"""Further opens per received email (people reopen; mail clients prefetch)."""
CLICK_RATE: Final = np.array([0.35, 0.2, 0.1, 0.2, 0.05, 0.0, 0.5])


@dataclass(frozen=True)
class EmailEvents:
    """One row per open or click (``clicked`` tells which)."""

    person: np.ndarray
    campaign: np.ndarray
    ts: np.ndarray
    clicked: np.ndarray
    product: np.ndarray
    """The product a click led to (-1 for opens)."""


def campaign_sends(now_ms: int) -> np.ndarray:
    """When each campaign went out (epoch ms), oldest first; the last one yesterday at 09:00."""
    yesterday = (now_ms // DAY_MS - 1) * DAY_MS + 9 * HOUR_MS
    return yesterday - (CAMPAIGNS - 1 - np.arange(CAMPAIGNS)) * 14 * DAY_MS


def build_email_events(
    rng: np.random.Generator,
    people: People,
    catalog: Catalog,
    consent_from: np.ndarray,
    consent_until: np.ndarray,
    now_ms: int,
) -> EmailEvents:
    sends = campaign_sends(now_ms)
    first = np.searchsorted(sends, consent_from)
    received = np.maximum(np.searchsorted(sends, consent_until) - first, 0)
    cohort = people.cohort[: people.customers]
    opens = rng.binomial(received, OPEN_RATE[cohort]) + rng.poisson(REOPENS[cohort] * received)
    person = np.repeat(np.arange(people.customers, dtype=np.int32), opens)
    campaign = first[person] + (rng.random(len(person)) * received[person]).astype(np.int64)
    delay = np.minimum(rng.exponential(6 * HOUR_MS, len(person)), 5 * DAY_MS).astype(np.int64)
    ts = sends[campaign] + delay
    keep = ts < now_ms - 1000
    person, campaign, ts = person[keep], campaign[keep], ts[keep]
    click = np.flatnonzero(rng.random(len(person)) < CLICK_RATE[cohort[person]])
    return _merge(rng, people, catalog, person, campaign, ts, click, now_ms)


def _merge(
    rng: np.random.Generator,
    people: People,
    catalog: Catalog,
    person: np.ndarray,
    campaign: np.ndarray,
    ts: np.ndarray,
    click: np.ndarray,
    now_ms: int,
) -> EmailEvents:
    click_ts = np.minimum(ts[click] + rng.integers(5_000, 900_000, len(click)), now_ms - 1000)
    favourite = people.favourite[person[click]]
    category = np.where(
        rng.random(len(click)) < 0.7, favourite, rng.integers(0, len(CATEGORIES), len(click))
    )
    product = np.concatenate(
        [np.full(len(person), -1, np.int32), catalog.pick(rng, category, click_ts).astype(np.int32)]
    )
    return EmailEvents(
        person=np.concatenate([person, person[click]]),
        campaign=np.concatenate([campaign, campaign[click]]).astype(np.int16),
        ts=np.concatenate([ts, click_ts]),
        clicked=np.concatenate([np.zeros(len(person), bool), np.ones(len(click), bool)]),
        product=product,
    )
