"""Build the whole world: catalogue → people → behaviour → orders → accounts → email → tickets.

Each part draws from its own random stream (``default_rng([seed, part])``), so the same seed
gives byte-identical tables and changing one part leaves the others as they were.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from personify import clock
from personify.demo import invalid
from personify.demo.accounts import Accounts, build_accounts
from personify.demo.behaviour import build_behaviour
from personify.demo.catalog import Catalog, build_catalog
from personify.demo.commerce import build_orders
from personify.demo.email import build_email_events
from personify.demo.events import EventLog, Sources, email_columns, web_columns
from personify.demo.people import People, build_loyalty, build_people, build_vip_list
from personify.demo.support import build_tickets
from personify.progress import Progress

TABLES = (
    "products",
    "shop_customers",
    "crm_contacts",
    "crm_updates",
    "consents",
    "orders",
    "order_items",
    "tickets",
)
"""The world's tables besides the event log, in the order they are written."""
STEPS = ("catalogue", "people", "sessions", "orders", "accounts", "email", "tickets", "events")


@dataclass(frozen=True)
class World:
    """A synthetic shop at ``now``: eight tables and two event logs (see the package
    docstring)."""

    seed: int
    customers: int
    now: datetime
    products: pa.Table
    shop_customers: pa.Table
    crm_contacts: pa.Table
    crm_updates: pa.Table
    consents: pa.Table
    orders: pa.Table
    order_items: pa.Table
    tickets: pa.Table
    events: EventLog
    """The web shop's tracking events."""
    email_events: EventLog
    """The email service's engagement events (opens, clicks)."""
    invalid: dict[str, int]
    """Flawed records added per table (``events``: per flaw)."""
    vip_list: pa.Table
    """The loyalty team's VIP sheet (``email``, ``tier``), for ``personify lists upload``: not
    a source, so not among :meth:`tables`."""
    loyalty: pa.Table
    """The data team's loyalty table (``email``, ``points``, ``tier``), loaded into the
    warehouse's ``analytics`` schema and read through ``relations:``: not a source either."""

    def tables(self) -> dict[str, pa.Table]:
        """The tables by name (the event log apart)."""
        return {name: getattr(self, name) for name in TABLES}

    def sizes(self) -> dict[str, int]:
        """Rows per table, the event logs included."""
        logs = {"events": self.events.num_rows, "email_events": self.email_events.num_rows}
        return {**{k: v.num_rows for k, v in self.tables().items()}, **logs}


def _accounts_and_email(
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
    people: People,
    catalog: Catalog,
    registered: np.ndarray,
    buyers: np.ndarray,
    now_ms: int,
) -> tuple[Accounts, dict[str, np.ndarray]]:
    """The accounts, then the email engagement their consents allow (one thread's work)."""
    accounts = build_accounts(rngs[0], people, registered, buyers, now_ms)
    email = build_email_events(
        rngs[1], people, catalog, accounts.consent_from, accounts.consent_until, now_ms
    )
    return accounts, email_columns(rngs[2], email)


def _sprinkle(
    pool: concurrent.futures.ThreadPoolExecutor, seed: int, tables: dict[str, pa.Table]
) -> dict[str, int]:
    """Add the invalid records to every table (in place); how many per table."""

    def one(k: int) -> tuple[pa.Table, int]:
        rng = np.random.default_rng([seed, len(STEPS), k])
        return invalid.sprinkle(rng, TABLES[k], tables[TABLES[k]])

    added: dict[str, int] = {}
    for name, (table, count) in zip(TABLES, pool.map(one, range(len(TABLES))), strict=True):
        tables[name], added[name] = table, count
    return added


def world_instant(now: datetime | None = None) -> datetime:
    """The world's ``now``: the given instant or the clock's, in UTC, to the whole second."""
    value = (now or clock.now()).astimezone(UTC)
    return value.replace(microsecond=0)


def build_world(
    customers: int = 10_000,
    *,
    seed: int = 7,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> World:
    """The world of ``customers`` customers for ``seed``, relative to ``now`` (default: the
    clock). Deterministic: the same arguments give the same tables, byte for byte."""
    if customers < 10:
        raise ValueError("a world needs at least 10 customers")
    instant = world_instant(now)
    now_ms = int(instant.timestamp()) * 1000
    salt = seed * 7919 + 13

    def rng(part: int) -> np.random.Generator:
        if progress:
            progress("Building the world", part, len(STEPS))
        return np.random.default_rng([seed, part])

    catalog = build_catalog(rng(0), customers, now_ms)
    people = build_people(rng(1), customers, now_ms)
    behaviour = build_behaviour(rng(2), people, catalog, now_ms)
    registered = behaviour.sessions.registered_ms
    placed = behaviour.sessions.person[behaviour.sessions.order >= 0]
    buyers = np.bincount(placed, minlength=people.size)[:customers] > 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # independent parts
        later = pool.submit(
            _accounts_and_email,
            (rng(4), rng(5), np.random.default_rng([seed, 7, 1])),
            people,
            catalog,
            registered,
            buyers,
            now_ms,
        )
        orders = build_orders(rng(3), people, catalog, behaviour, now_ms, salt + 2)
        tickets = build_tickets(rng(6), people, registered, now_ms)
        web = web_columns(rng(7), behaviour)
        accounts, mail = later.result()
        tables = {
            "products": catalog.table,
            "shop_customers": accounts.shop_customers,
            "crm_contacts": accounts.crm_contacts,
            "crm_updates": accounts.crm_updates,
            "consents": accounts.consents,
            "orders": orders.table,
            "order_items": orders.items,
            "tickets": tickets,
        }
        added = _sprinkle(pool, seed, tables)
    sessions, carts = behaviour.sessions, behaviour.carts
    sources = Sources(people, catalog, sessions, carts, orders, accounts, now_ms, salt)
    events = EventLog(**web, sources=sources)
    email_events = EventLog(**mail, sources=sources)
    if progress:
        progress("Building the world", len(STEPS), len(STEPS))
    for name, log in (("events", events), ("email_events", email_events)):
        flaws = log.flaws()
        added[name] = sum(v for k, v in flaws.items() if k not in ("ok", "duplicate"))
        added[f"{name}_duplicate"] = flaws["duplicate"]
    vip_list = build_vip_list(np.random.default_rng([seed, len(STEPS) + 1]), people)
    loyalty = build_loyalty(np.random.default_rng([seed, len(STEPS) + 2]), people)
    return World(
        seed=seed,
        customers=customers,
        now=instant,
        events=events,
        email_events=email_events,
        invalid=added,
        vip_list=vip_list,
        loyalty=loyalty,
        **tables,
    )
