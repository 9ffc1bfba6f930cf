"""Web behaviour: visits to the shop as sessions, each a run of Segment-style events, and carts.

A person's sessions fall in their activity window (recent ones more likely for vip and active
people). The first few are anonymous (``anonymousId`` only); the person then logs in — an
``identify`` call carrying both ids — and stays logged in on that device; the first identified
session on every other device identifies again. A session's events, in order::

    landing page · [identify] · pages · Product Viewed … · Product Added … · [Checkout Started]
    · [Order Completed]

Product Added events re-use the session's first viewed products and share the session's
``cart_id``. Orders complete only when logged in; other carts are abandoned — and about 4 % of
active customers abandoned one in the last one to six hours before ``now``.

Everything is numpy arrays, one row per session or per event (kind codes below); the
:mod:`personify.demo.events` module renders them as Segment payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from personify.demo import _text as tx
from personify.demo._vocab import CATEGORIES, REFERRERS, SITE_PAGES, UTM_CAMPAIGNS
from personify.demo.catalog import Catalog
from personify.demo.people import ACTIVE, HOUR_MS, NEW, VIP, People

LANDING, IDENTIFY, PAGE, VIEWED, ADDED, CHECKOUT, COMPLETED, OPENED, CLICKED = range(9)
"""Compact event kinds (a landing page is a page with the session's campaign)."""
BLOCKS: Final = np.array([LANDING, IDENTIFY, PAGE, VIEWED, ADDED, CHECKOUT, COMPLETED], np.int8)
SESSIONS_MEAN: Final = np.array([5.0, 1.8, 1.4, 0.8, 0.3, 0.3, 28.0])
"""Mean sessions beyond the first, per cohort (see :data:`personify.demo.people.COHORTS`)."""
CART_RATE: Final = np.array([0.4, 0.26, 0.22, 0.25, 0.1, 0.04, 0.6])
COMPLETE_RATE: Final = np.array([0.85, 0.75, 0.7, 0.65, 0.5, 0.0, 0.95])
RECENCY_BIAS: Final = np.array([0.5, 0.7, 1.0, 1.0, 1.0, 1.0, 0.05])
"""Exponent on a session's place in the window: below 1 crowds sessions towards its end."""
RECENT_CART_RATE: Final = 0.04
PAGES: Final = len(SITE_PAGES) + len(CATEGORIES)
"""Page indexes: the site pages, then one collection page per category."""


@dataclass(frozen=True)
class Sessions:
    """One row per visit, in order of start time."""

    person: np.ndarray
    device: np.ndarray
    """Device (browser) index: one ``anonymousId`` each."""
    start: np.ndarray
    identified: np.ndarray
    """Logged in (events carry ``userId``)."""
    identify: np.ndarray
    """Holds an ``identify`` call (the first login on its device)."""
    campaign: np.ndarray
    """UTM campaign of the landing page (index into ``UTM_CAMPAIGNS``), -1 for none."""
    referrer: np.ndarray
    cart: np.ndarray
    """Cart index, -1 for none."""
    order: np.ndarray
    """Order index (a completed cart), -1 for none."""
    registered_ms: np.ndarray
    """Per customer: when they first logged in (their shop account's ``created_at``)."""


@dataclass(frozen=True)
class WebEvents:
    """One row per web event: session by session (in order of start), each in time order."""

    kind: np.ndarray
    session: np.ndarray
    ts: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    page: np.ndarray
    user: np.ndarray
    """The event carries ``userId``."""


@dataclass(frozen=True)
class Carts:
    """Carts and their items (the session's Product Added events)."""

    session: np.ndarray
    item_start: np.ndarray
    """Offsets into the item arrays, one more than there are carts."""
    product: np.ndarray
    quantity: np.ndarray
    subtotal: np.ndarray
    completed_ms: np.ndarray
    """When the Order Completed event fired (-1 for abandoned carts)."""


@dataclass(frozen=True)
class Behaviour:
    sessions: Sessions
    events: WebEvents
    carts: Carts


def build_behaviour(
    rng: np.random.Generator, people: People, catalog: Catalog, now_ms: int
) -> Behaviour:
    """Sessions, their events and carts for everyone in ``people``."""
    cohort = people.cohort
    n_sess = 1 + rng.poisson(SESSIONS_MEAN[cohort])
    person = np.repeat(np.arange(people.size, dtype=np.int32), n_sess)
    first = np.cumsum(n_sess) - n_sess
    start = _session_starts(rng, people, person, first, n_sess)
    forced = _recent_carts(rng, people, start, first, n_sess, now_ms)
    rank = np.arange(len(person)) - first[person]
    login = np.where(
        np.arange(people.size) < people.customers,
        np.minimum(rng.geometric(0.55, people.size) - 1, n_sess - 1),
        n_sess,
    )
    identified = rank >= login[person]
    device = _devices(rng, people.size, person)
    identify = np.zeros(len(person), bool)
    logged = np.flatnonzero(identified)
    identify[logged[np.unique(device[logged], return_index=True)[1]]] = True
    registered = start[first + login.clip(max=n_sess - 1)][: people.customers]
    by_time = tx.stable_argsort(start)  # from here on, sessions in order of start
    person, start, identified = person[by_time], start[by_time], identified[by_time]
    device, identify, forced = device[by_time], identify[by_time], forced[by_time]
    counts = _session_counts(rng, cohort[person], identified, identify, forced)
    events = _events(rng, people, catalog, person, start, identified, identify, counts, now_ms)
    carts, cart, order = _carts(counts, events, catalog)
    n = len(person)
    sessions = Sessions(
        person=person,
        device=device,
        start=start,
        identified=identified,
        identify=identify,
        campaign=np.where(rng.random(n) < 0.25, rng.integers(0, len(UTM_CAMPAIGNS), n), -1),
        referrer=np.where(rng.random(n) < 0.5, rng.integers(0, len(REFERRERS), n), -1),
        cart=cart,
        order=order,
        registered_ms=registered,
    )
    return Behaviour(sessions=sessions, events=events, carts=carts)


def _session_starts(
    rng: np.random.Generator,
    people: People,
    person: np.ndarray,
    first: np.ndarray,
    n_sess: np.ndarray,
) -> np.ndarray:
    """Sorted instants in each person's window (uniform order statistics, last one at the end)."""
    gaps = rng.exponential(size=len(person))
    total = np.cumsum(gaps)
    before = (total[first] - gaps[first])[person]
    u = (total - before) / (total[first + n_sess - 1] - total[first] + gaps[first])[person]
    u = np.clip(u, 0.0, 1.0) ** RECENCY_BIAS[people.cohort[person]]
    span = (people.window_end - people.window_start)[person]
    start: np.ndarray = people.window_start[person] + (u * span).astype(np.int64)
    return start


def _recent_carts(
    rng: np.random.Generator,
    people: People,
    start: np.ndarray,
    first: np.ndarray,
    n_sess: np.ndarray,
    now_ms: int,
) -> np.ndarray:
    """Move some active customers' last visit to 1–6 hours ago: they will abandon a cart."""
    last = first + n_sess - 1
    previous = np.where(n_sess > 1, start[np.maximum(last - 1, 0)], 0)
    chosen = (
        (np.arange(people.size) < people.customers)
        & np.isin(people.cohort, [VIP, ACTIVE, NEW])
        & (rng.random(people.size) < RECENT_CART_RATE)
        & (previous < now_ms - 7 * HOUR_MS)
    )
    rows = last[chosen]
    start[rows] = now_ms - (rng.uniform(1, 6, len(rows)) * HOUR_MS).astype(np.int64)
    forced = np.zeros(len(start), bool)
    forced[rows] = True
    return forced


def _devices(rng: np.random.Generator, people: int, person: np.ndarray) -> np.ndarray:
    u = rng.random(people)
    n_dev = 1 + (u < 0.35) + (u < 0.08)
    device: np.ndarray = (
        (np.cumsum(n_dev) - n_dev)[person] + rng.integers(0, 3, len(person)) % n_dev[person]
    ).astype(np.int32)
    return device


def _session_counts(
    rng: np.random.Generator,
    cohort: np.ndarray,
    identified: np.ndarray,
    identify: np.ndarray,
    forced: np.ndarray,
) -> np.ndarray:
    """Events per block of each session: an ``(sessions, 7)`` matrix in :data:`BLOCKS` order."""
    n = len(cohort)
    cart = (rng.random(n) < CART_RATE[cohort]) | forced
    adds = cart * (1 + np.minimum(rng.poisson(0.5, n), 4))
    views = np.maximum(rng.poisson(0.6, n), adds)
    checkout = cart & (rng.random(n) < np.where(forced, 0.5, 0.7))
    completed = checkout & identified & ~forced & (rng.random(n) < COMPLETE_RATE[cohort])
    counts = np.empty((n, len(BLOCKS)), np.int32)
    for k, column in enumerate(
        (1, identify, rng.poisson(0.4, n), views, adds, checkout, completed)
    ):
        counts[:, k] = column
    return counts


def _events(
    rng: np.random.Generator,
    people: People,
    catalog: Catalog,
    person: np.ndarray,
    start: np.ndarray,
    identified: np.ndarray,
    identify: np.ndarray,
    counts: np.ndarray,
    now_ms: int,
) -> WebEvents:
    kind = np.repeat(np.tile(BLOCKS, len(counts)), counts.ravel())
    n_ev = counts.sum(axis=1, dtype=np.int64)
    session = np.repeat(np.arange(len(counts), dtype=np.int32), n_ev)
    ev_first = np.cumsum(n_ev) - n_ev
    ts = _timestamps(rng, start, session, ev_first, n_ev, now_ms)
    user = identified[session]
    user[ev_first[identify]] = False  # the landing page before the login is still anonymous
    product = np.full(len(kind), -1, np.int32)
    views = np.flatnonzero(kind == VIEWED)
    fav = people.favourite[person[session[views]]]
    category = np.where(
        rng.random(len(views)) < 0.6, fav, rng.integers(0, len(CATEGORIES), len(views))
    )
    product[views] = catalog.pick(rng, category, ts[views])
    adds = np.flatnonzero(kind == ADDED)
    product[adds] = product[adds - counts[session[adds], 3]]  # add j re-uses view j
    quantity = np.zeros(len(kind), np.int16)
    u = rng.random(len(adds))
    quantity[adds] = 1 + (u < 0.2) + (u < 0.05)
    return WebEvents(
        kind=kind,
        session=session,
        ts=ts,
        product=product,
        quantity=quantity,
        page=_pages(rng, kind, lambda rows: people.favourite[person[session[rows]]]),
        user=user,
    )


def _timestamps(
    rng: np.random.Generator,
    start: np.ndarray,
    session: np.ndarray,
    ev_first: np.ndarray,
    n_ev: np.ndarray,
    now_ms: int,
) -> np.ndarray:
    """Events 2 s to 3 min apart from the session start; sessions end before ``now``."""
    gaps = 2000 + np.minimum(rng.exponential(35_000, len(session)), 180_000).astype(np.int64)
    total = np.cumsum(gaps)
    ts = start[session] + total - (total[ev_first] - gaps[ev_first])[session]
    overflow = np.maximum(ts[ev_first + n_ev - 1] - (now_ms - 1000), 0)
    out: np.ndarray = ts - overflow[session]
    return out


def _pages(
    rng: np.random.Generator, kind: np.ndarray, favourite: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Landing pages (home, the favourite collection, new arrivals, sale…) and other pages."""
    page = np.full(len(kind), -1, np.int16)
    landing = np.flatnonzero(kind == LANDING)
    u = rng.random(len(landing))
    collection = len(SITE_PAGES) + favourite(landing)
    other = rng.integers(0, PAGES, len(landing))
    page[landing] = np.select([u < 0.4, u < 0.7, u < 0.8, u < 0.9], [0, collection, 1, 2], other)
    pages = np.flatnonzero(kind == PAGE)
    page[pages] = rng.integers(0, PAGES, len(pages))
    return page


def _carts(
    counts: np.ndarray, events: WebEvents, catalog: Catalog
) -> tuple[Carts, np.ndarray, np.ndarray]:
    has_cart = counts[:, 4] > 0
    cart = np.where(has_cart, np.cumsum(has_cart) - 1, -1).astype(np.int32)
    completed = counts[:, 6] > 0
    order = np.where(completed, np.cumsum(completed) - 1, -1).astype(np.int32)
    sessions = np.flatnonzero(has_cart)
    adds = np.flatnonzero(events.kind == ADDED)
    n_items = counts[sessions, 4]
    item_start = np.concatenate([[0], np.cumsum(n_items)])
    product = events.product[adds]
    quantity = events.quantity[adds]
    subtotal = np.add.reduceat(catalog.price[product] * quantity, item_start[:-1])
    completed_ms = np.full(len(sessions), -1, np.int64)
    done = np.flatnonzero(events.kind == COMPLETED)
    completed_ms[cart[events.session[done]]] = events.ts[done]
    carts = Carts(
        session=sessions.astype(np.int32),
        item_start=item_start,
        product=product,
        quantity=quantity,
        subtotal=np.round(subtotal, 2),
        completed_ms=completed_ms,
    )
    return carts, cart, order
