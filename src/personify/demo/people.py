"""Who lives in the world: customers (with accounts) and anonymous visitors (without).

Every person gets a cohort that shapes their behaviour and activity window:

==========  ======  ===========================================================
cohort      share   activity
==========  ======  ===========================================================
champion     1 %    a customer of long standing on a spree: visits almost daily this month,
                    buys several times, opens and clicks every email (engagement > 80)
vip          7 %    frequent, buys often, opens and clicks email; active until now
active      37 %    regular visitor; active until the last few weeks
lapsed      28 %    bought in the past, nothing for 61–420 days (re-engagement)
new         12 %    first seen in the last four weeks
dormant     15 %    one or two visits long ago
visitor     (+30 %) anonymous traffic that never logs in (not a customer)
==========  ======  ===========================================================

Names, emails (unique, on reserved domains), phones (one number, written in mixed formats),
countries, IANA time zones and cities are drawn per customer; the CRM and the shop each hold an
independently *dirtied* copy of the email (mixed case, surrounding spaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import _text as tx
from personify.demo._vocab import (
    CATEGORIES,
    COUNTRIES,
    EMAIL_DOMAINS,
    EMAIL_SEPARATORS,
    FIRST_NAMES,
    LAST_NAMES,
)

VIP, ACTIVE, LAPSED, NEW, DORMANT, VISITOR, CHAMPION = range(7)
COHORTS: Final = ("vip", "active", "lapsed", "new", "dormant", "visitor", "champion")
"""Cohort names by code; per-cohort parameters elsewhere are arrays in this order."""
CUSTOMER_COHORTS: Final = (VIP, ACTIVE, LAPSED, NEW, DORMANT, CHAMPION)
COHORT_SHARES: Final = (0.07, 0.37, 0.28, 0.12, 0.15, 0.01)
VISITORS_PER_CUSTOMER: Final = 0.3
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000


@dataclass(frozen=True)
class People:
    """Per-person arrays (numbers, not strings: text is rendered for the rows asked for, in the
    order asked). Indexes ``[0, customers)`` are customers, the rest visitors; the account fields
    (names, email, ids, phone) are used for customers only."""

    customers: int
    cohort: np.ndarray
    country: np.ndarray
    favourite: np.ndarray
    """Favourite product category."""
    window_start: np.ndarray
    window_end: np.ndarray
    """Activity window (epoch ms): sessions fall inside it."""
    first: np.ndarray
    last: np.ndarray
    zone: np.ndarray
    city: np.ndarray
    separator: np.ndarray
    domain: np.ndarray
    number: np.ndarray
    """The unique number in the email address."""
    shop_num: np.ndarray
    crm_num: np.ndarray
    in_crm: np.ndarray
    phone: np.ndarray
    """National significant number as an integer; 0 when the person gave no phone."""

    @property
    def size(self) -> int:
        return len(self.cohort)

    def first_names(self, rows: np.ndarray) -> pa.Array:
        return tx.pick(_FIRST, self.first[rows])

    def last_names(self, rows: np.ndarray) -> pa.Array:
        return tx.pick(_LAST, self.last[rows])

    def locales(self, rows: np.ndarray) -> pa.Array:
        return tx.pick([c.locale for c in COUNTRIES], self.country[rows])

    def country_codes(self, rows: np.ndarray) -> pa.Array:
        return tx.pick([c.code for c in COUNTRIES], self.country[rows])

    def timezones(self, rows: np.ndarray) -> pa.Array:
        return tx.pick(_ZONES, self.zone[rows])

    def cities(self, rows: np.ndarray) -> pa.Array:
        return tx.pick(_CITIES, self.city[rows])

    def shop_ids(self, rows: np.ndarray) -> pa.Array:
        """The shop's customer id (13 digits) — the web shop's ``userId``."""
        return tx.ints(self.shop_num[rows])

    def crm_ids(self, rows: np.ndarray) -> pa.Array:
        return tx.ints(self.crm_num[rows])

    def emails(self, rows: np.ndarray, dirt: np.ndarray | None = None) -> pa.Array:
        """The addresses of ``rows``: clean (lower case), or as dirtied by :func:`dirt` codes."""
        case = np.zeros(len(rows), np.int64) if dirt is None else dirt % 3
        pad = np.zeros(len(rows), np.int64) if dirt is None else dirt // 3
        return tx.join(
            tx.pick(["", " ", ""], pad),
            tx.pick(_FIRST_CASED, case * len(FIRST_NAMES) + self.first[rows]),
            tx.pick(EMAIL_SEPARATORS, self.separator[rows]),
            tx.pick(_LAST_CASED, case * len(LAST_NAMES) + self.last[rows]),
            tx.ints(self.number[rows]),
            "@",
            tx.pick(_DOMAINS_CASED, case * len(EMAIL_DOMAINS) + self.domain[rows]),
            tx.pick(["", " ", "  "], pad),
        )

    def phones(self, rng: np.random.Generator, rows: np.ndarray) -> pa.Array:
        """The numbers of ``rows`` written one of the ways people write them (null if none)."""
        return format_phones(rng, self.phone[rows], self.country[rows])


_FIRST = [f for f, _ in FIRST_NAMES]
_LAST = [s for s, _ in LAST_NAMES]
_ZONES = [z for c in COUNTRIES for z in c.timezones]
_CITIES = [x for c in COUNTRIES for x in c.cities]


def _cased(words: list[str]) -> list[str]:
    return words + [w.title() for w in words] + [w.upper() for w in words]


_FIRST_CASED = _cased([a for _, a in FIRST_NAMES])
_LAST_CASED = _cased([a for _, a in LAST_NAMES])
_DOMAINS_CASED = _cased(list(EMAIL_DOMAINS))


def dirt(rng: np.random.Generator, n: int) -> np.ndarray:
    """How one system holds each address: ``case + 3·padding`` with case lower (75 %), Title
    (20 %) or UPPER (5 %) and padding none (80 %), `` x `` (10 %) or ``x  `` (10 %). Lower-casing
    and trimming gives the clean address back."""
    case = rng.choice(3, n, p=[0.75, 0.2, 0.05])
    pad = rng.choice(3, n, p=[0.8, 0.1, 0.1])
    return (case + 3 * pad).astype(np.int8)


def build_people(rng: np.random.Generator, customers: int, now_ms: int) -> People:
    """``customers`` customers and 30 % as many anonymous visitors."""
    visitors = int(customers * VISITORS_PER_CUSTOMER)
    n = customers + visitors
    cohort = np.concatenate(
        [rng.choice(CUSTOMER_COHORTS, customers, p=COHORT_SHARES), np.full(visitors, VISITOR)]
    ).astype(np.int8)
    weights = np.array([c.weight for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), n, p=weights / weights.sum())
    start, end = _windows(rng, cohort, now_ms)
    mine = country[:customers]
    return People(
        customers=customers,
        cohort=cohort,
        country=country,
        favourite=rng.integers(0, len(CATEGORIES), n),
        window_start=start,
        window_end=end,
        first=rng.integers(0, len(FIRST_NAMES), n),
        last=rng.integers(0, len(LAST_NAMES), n),
        zone=_pick_within(rng, mine, [len(c.timezones) for c in COUNTRIES], skew=False),
        city=_pick_within(rng, mine, [len(c.cities) for c in COUNTRIES], skew=True),
        separator=rng.integers(0, len(EMAIL_SEPARATORS), customers),
        domain=rng.integers(0, len(EMAIL_DOMAINS), customers),
        number=rng.permutation(customers) + 1,
        shop_num=7_000_000_000_000 + rng.permutation(customers) * 1000 + 17,
        crm_num=100_001 + rng.permutation(customers) * 3,
        in_crm=rng.random(customers) < 0.88,
        phone=phone_numbers(rng, mine),
    )


def _windows(rng: np.random.Generator, cohort: np.ndarray, now: int) -> tuple[np.ndarray, ...]:
    n = len(cohort)

    def days(lo: float, hi: float) -> np.ndarray:
        return (rng.uniform(lo, hi, n) * DAY_MS).astype(np.int64)

    hours = (rng.uniform(1, 12, n) * HOUR_MS).astype(np.int64)
    start = np.select(
        [cohort == VIP, cohort == ACTIVE, cohort == NEW, cohort == VISITOR, cohort == CHAMPION],
        [
            now - days(120, 730),
            now - days(45, 730),
            now - days(1, 28),
            now - days(0.2, 365),
            now - days(200, 700),
        ],
        0,
    )
    lapsed_end, dormant_end = now - days(61, 420), now - days(90, 700)
    end = np.select(
        [cohort == VIP, cohort == ACTIVE, cohort == LAPSED, cohort == DORMANT, cohort == CHAMPION],
        [now - days(0.05, 3), now - days(0.05, 25), lapsed_end, dormant_end, now - days(0.05, 1)],
        0,
    )
    start = np.select(
        [cohort == LAPSED, cohort == DORMANT], [end - days(20, 300), end - days(0, 20)], start
    )
    short = (cohort == NEW) | (cohort == VISITOR)
    span = np.where(cohort == NEW, now - hours - start, days(0, 3))
    end = np.where(short, start + (span * rng.uniform(0.3, 1, n)).astype(np.int64), end)
    end = np.minimum(end, now - HOUR_MS)
    return np.minimum(start, end), end


def _pick_within(
    rng: np.random.Generator, country: np.ndarray, sizes: list[int], *, skew: bool
) -> np.ndarray:
    """An index into a per-country list flattened in country order (skewed to the first)."""
    first = np.cumsum([0, *sizes])[:-1]
    u = rng.random(len(country))
    u = u * u if skew else u
    index: np.ndarray = first[country] + (u * np.array(sizes)[country]).astype(np.int64)
    return index


def phone_numbers(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """A mobile number (national significant number, as an integer) per person; 15 % gave none
    (0)."""
    n = len(country)
    number = np.zeros(n, np.int64)
    for k, c in enumerate(COUNTRIES):
        rows = np.flatnonzero(country == k)
        m = len(rows)
        if c.mobile_prefix:
            width = c.digits - len(c.mobile_prefix)
            body = rng.integers(10 ** (width - 1), 10**width, m)
            number[rows] = int(c.mobile_prefix) * 10**width + body
        else:  # North American plan: area code, exchange, line
            area, exchange = rng.integers(201, 990, m), rng.integers(200, 1000, m)
            number[rows] = area * 10**7 + exchange * 10**4 + rng.integers(0, 10**4, m)
    return np.where(rng.random(n) < 0.15, 0, number)


_NANP = [k for k, c in enumerate(COUNTRIES) if c.calling_code == "1"]
E164, SPACED, NATIONAL, PREFIXED, NANP_NATIONAL, NO_PHONE = range(6)


def format_phones(rng: np.random.Generator, number: np.ndarray, country: np.ndarray) -> pa.Array:
    """The numbers written the ways people write them: E.164 (``+4915112345678``), international
    with spaces (``+49 151 12345678``), national (``0151 1234 5678``, ``(415) 555-0123``) or with
    a ``00`` prefix (``0049 15112345678``). Null where the number is 0."""
    style = rng.integers(0, 4, len(number))
    style = np.where((style == NATIONAL) & np.isin(country, _NANP), NANP_NATIONAL, style)
    style = np.where(number == 0, NO_PHONE, style)

    def cc(rows: np.ndarray) -> pa.Array:
        return tx.pick([c.calling_code for c in COUNTRIES], country[rows])

    def digits(rows: np.ndarray) -> pa.Array:
        return tx.ints(number[rows])

    def part(rows: np.ndarray, a: int, b: int = 99) -> pa.Array:
        return pc.utf8_slice_codeunits(digits(rows), a, b)

    def national(rows: np.ndarray) -> pa.Array:
        trunk = tx.pick([c.trunk for c in COUNTRIES], country[rows])
        text = tx.join(trunk, part(rows, 0, 3), " ", part(rows, 3, 7), " ", part(rows, 7))
        return pc.utf8_rtrim(text, " ")

    return tx.by_group(
        style,
        [
            lambda r: tx.join("+", cc(r), digits(r)),
            lambda r: tx.join("+", cc(r), " ", part(r, 0, 3), " ", part(r, 3)),
            national,
            lambda r: tx.join("00", cc(r), " ", digits(r)),
            lambda r: tx.join("(", part(r, 0, 3), ") ", part(r, 3, 6), "-", part(r, 6)),
            lambda r: pa.nulls(len(r), pa.string()),
        ],
    )


VIP_LIST_FLAWS: Final = ("", "call back re. VIP desk")
"""The VIP list's rows that are no address (typed by hand in the sheet): quarantined on upload."""


def build_vip_list(rng: np.random.Generator, people: People) -> pa.Table:
    """The loyalty team's VIP sheet (``email``, ``tier``): every vip (``gold``) and champion
    (``platinum``) customer's address as the sheet holds it (mixed case, stray spaces), in the
    customers' order, then :data:`VIP_LIST_FLAWS` — what ``personify lists upload`` reads."""
    n = people.customers
    cohort = people.cohort[:n]
    rows = np.flatnonzero((cohort == VIP) | (cohort == CHAMPION))
    emails = people.emails(rows, dirt(rng, n)[rows])
    tiers = tx.pick(["gold", "platinum"], (cohort[rows] == CHAMPION).astype(np.int64))
    flaws = pa.array(list(VIP_LIST_FLAWS), pa.string())
    return pa.table(
        {
            "email": pa.concat_arrays([emails.cast(pa.string()), flaws]),
            "tier": pa.concat_arrays([tiers.cast(pa.string()), pa.array(["gold"] * len(flaws))]),
        }
    )


LOYALTY_TIERS: Final = ("bronze", "silver", "gold")
LOYALTY_POINTS: Final = (0, 500, 2000)
"""The points each tier starts at."""


def build_loyalty(rng: np.random.Generator, people: People) -> pa.Table:
    """The data team's loyalty table (``email``, ``points``, ``tier``), as their own model
    writes it into the warehouse (clean addresses): about half the customers are members, the
    vip and champion ones all of them, with more points. Read through ``relations:``."""
    n = people.customers
    cohort = people.cohort[:n]
    keen = (cohort == VIP) | (cohort == CHAMPION)
    member = keen | (rng.random(n) < 0.45)
    scale = np.where(cohort == CHAMPION, 4000.0, np.where(keen, 1500.0, 350.0))
    points = np.round(rng.gamma(2.0, scale / 2.0)).astype(np.int64)
    rows = np.flatnonzero(member)
    tier = np.searchsorted(np.array(LOYALTY_POINTS), points[rows], side="right") - 1
    return pa.table(
        {
            "email": people.emails(rows).cast(pa.string()),
            "points": pa.array(points[rows], pa.int64()),
            "tier": tx.pick(LOYALTY_TIERS, tier).cast(pa.string()),
        }
    )
