"""Build the whole world: catalogue → people → behaviour → orders → accounts → email → tickets.

Each part draws from its own random stream (``default_rng([seed, part])``), so the same seed
gives byte-identical tables and changing one part leaves the others as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from personify import clock
from personify.demo import invalid
from personify.demo.accounts import build_accounts
from personify.demo.behaviour import build_behaviour
from personify.demo.catalog import build_catalog
from personify.demo.commerce import build_orders
from personify.demo.email import build_email_events
from personify.demo.events import EventLog, Sources, build_email_log, build_web_log
from personify.demo.people import build_people
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

    def tables(self) -> dict[str, pa.Table]:
        """The tables by name (the event log apart)."""
        return {name: getattr(self, name) for name in TABLES}

    def sizes(self) -> dict[str, int]:
        """Rows per table, the event logs included."""
        logs = {"events": self.events.num_rows, "email_events": self.email_events.num_rows}
        return {**{k: v.num_rows for k, v in self.tables().items()}, **logs}


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
    orders = build_orders(rng(3), people, catalog, behaviour, now_ms, salt + 2)
    buyers = np.bincount(orders.person, minlength=people.size)[:customers] > 0
    accounts = build_accounts(rng(4), people, behaviour.sessions.registered_ms, buyers, now_ms)
    email = build_email_events(
        rng(5), people, catalog, accounts.consent_from, accounts.consent_until, now_ms
    )
    tickets = build_tickets(rng(6), people, behaviour.sessions.registered_ms, now_ms)
    sources = Sources(people, catalog, behaviour, orders, accounts, now_ms, salt)
    events = build_web_log(rng(7), sources)
    email_events = build_email_log(np.random.default_rng([seed, 7, 1]), sources, email)
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
    flawed = np.random.default_rng([seed, len(STEPS)])
    added: dict[str, int] = {}
    for name in TABLES:
        tables[name], added[name] = invalid.sprinkle(flawed, name, tables[name])
    if progress:
        progress("Building the world", len(STEPS), len(STEPS))
    for name, log in (("events", events), ("email_events", email_events)):
        flaws = log.flaws()
        added[name] = sum(v for k, v in flaws.items() if k not in ("ok", "duplicate"))
        added[f"{name}_duplicate"] = flaws["duplicate"]
    return World(
        seed=seed,
        customers=customers,
        now=instant,
        events=events,
        email_events=email_events,
        invalid=added,
        **tables,
    )
