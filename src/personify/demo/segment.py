"""Render a slice of the :class:`~personify.demo.events.EventLog` as Segment payloads.

Columns: :data:`~personify.demo.events.SCHEMA`. ``properties`` is JSON text (its shape
depends on the event), built kind by kind from precomputed fragments (one per product, page and
campaign):

=====================  ===========================================================
event                  properties
=====================  ===========================================================
page                   path, title, url, referrer
identify               (none; ``traits``: email, firstName, lastName)
Product Viewed         product_id, sku, name, category, price, currency, url
Product Added          cart_id, the product's fields, quantity
Checkout Started       cart_id, value, currency
Order Completed        order_id, cart_id, total, revenue, discount, coupon, currency, products[]
Email Opened           email_id, campaign_id, campaign_name, email_subject
Email Link Clicked     the same and link_url
=====================  ===========================================================

``context`` (ip, locale, userAgent, page {url, referrer}, campaign) and ``traits``
have a fixed shape, so they are structs — of dictionary-encoded values, which costs no string copy
per event. Web events' context page is the page the event happened on (campaign only on a
session's landing page); email events' context carries the email campaign as UTM and no page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import _text as tx
from personify.demo._vocab import (
    CATEGORIES,
    CHECKOUT_PAGE,
    COUNTRIES,
    CURRENCY,
    EMAIL_SUBJECTS,
    IP_BLOCKS,
    LOGIN_PAGE,
    REFERRERS,
    SHOP_URL,
    SITE_PAGES,
    THANK_YOU_PAGE,
    USER_AGENTS,
    UTM_CAMPAIGNS,
)
from personify.demo.behaviour import (
    ADDED,
    CHECKOUT,
    CLICKED,
    COMPLETED,
    IDENTIFY,
    LANDING,
    OPENED,
    PAGE,
    PAGES,
    VIEWED,
)
from personify.demo.commerce import cart_ids, item_rows
from personify.demo.email import CAMPAIGNS
from personify.demo.events import NO_CART_ID, NO_IDENTITY, NO_MESSAGE_ID, SCHEMA

if TYPE_CHECKING:
    from personify.demo.events import EventLog, Sources

TYPES: Final = ("page", "identify", "track")
TYPE_OF: Final = np.array([0, 1, 0, 2, 2, 2, 2, 2, 2], np.int32)
EVENTS: Final = (
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Email Opened",
    "Email Link Clicked",
)
EVENT_OF: Final = np.array([-1, -1, -1, 0, 1, 2, 3, 4, 5], np.int32)
LOGIN, CHECKOUT_P, THANK_YOU = PAGES, PAGES + 1, PAGES + 2
PRODUCT_PAGES: Final = PAGES + 3
"""Page index of the first product page (one per product follows)."""
INTERNAL: Final = len(REFERRERS)
"""Referrer index of the shop itself (pages after the first); ``INTERNAL + 1`` is none."""


def render(log: EventLog, lo: int, hi: int) -> pa.RecordBatch:
    """Events ``lo`` to ``hi`` (exclusive) as one record batch."""
    b = _Batch(log, lo, hi)
    flaw = log.flaw[lo:hi]
    user = log.user[lo:hi] & (flaw != NO_IDENTITY)
    anonymous = b.web & (flaw != NO_IDENTITY)
    page = (b.kind == LANDING) | (b.kind == PAGE)
    columns = [
        tx.null_where(flaw == NO_MESSAGE_ID, _message_ids(log.msg[lo:hi], b.src.salt)),
        tx.dictionary(TYPES, TYPE_OF[b.kind]),
        tx.dictionary(EVENTS, EVENT_OF[b.kind]),
        tx.dictionary(_page_names(), np.where(page, log.aux[lo:hi], -1)),
        tx.null_where(~anonymous, _anonymous_ids(b)),
        tx.null_where(~user, b.src.people.shop_ids(np.where(user, b.person, 0))),
        tx.timestamps(log.ts[lo:hi]),
        tx.by_group(b.kind, [getattr(b, name) for name in _PROPERTIES]),
        _context(b),
        _traits(b),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def _message_ids(msg: np.ndarray, salt: int) -> pa.Array:
    """``ajs-next-`` and 16 hex digits: unique per message number (a bijective mix)."""
    return tx.hex_ids(tx.mix64(msg, salt), 16, "ajs-next-")


def _anonymous_ids(b: _Batch) -> pa.Array:
    """Each device's UUID, computed once per run of rows from the same session."""
    if not b.web.any():
        return pa.nulls(len(b.kind), pa.string())
    new_run = np.diff(b.session, prepend=-1) != 0
    run = np.cumsum(new_run) - 1
    return tx.uuids(b.device[new_run], b.src.salt + 1).take(pa.array(run))


class _Batch:
    """The rows being rendered; the ``kind`` methods build one kind's ``properties`` for the
    given rows (indexes into the batch)."""

    def __init__(self, log: EventLog, lo: int, hi: int) -> None:
        self.log, self.lo = log, lo
        self.src: Sources = log.sources
        self.frags = self.src.fragments
        self.kind = log.kind[lo:hi]
        self.web = self.kind < OPENED
        owner = log.owner[lo:hi]
        sessions = self.src.sessions
        self.session = np.where(self.web, owner, 0)
        self.person = np.where(self.web, sessions.person[self.session], owner)
        self.device = sessions.device[self.session]

    def at(self, rows: np.ndarray) -> np.ndarray:
        return self.lo + rows

    def cart_id(self, rows: np.ndarray) -> pa.Array:
        cart = self.src.sessions.cart[self.session[rows]]
        return cart_ids(cart, self.src.salt + 2)

    def page(self, rows: np.ndarray) -> tx.Lookup:
        page = self.log.aux[self.at(rows)].astype(np.int64)
        return tx.Lookup(self.frags.page_properties, page * _REFERRERS + _referrer(self, rows))

    def identify(self, rows: np.ndarray) -> tx.Lookup:
        return tx.Lookup(pa.nulls(1, pa.string()), np.zeros(len(rows), np.int64))

    def viewed(self, rows: np.ndarray) -> tx.Lookup:
        return tx.Lookup(self.frags.viewed, self.log.product[self.at(rows)])

    def added(self, rows: np.ndarray) -> pa.Array:
        at = self.at(rows)
        cart = tx.join('"cart_id":"', self.cart_id(rows), '",')
        cart = tx.where(self.log.flaw[at] == NO_CART_ID, "", cart)
        product = self.frags.product.take(pa.array(self.log.product[at]))
        return tx.join("{", cart, product, ',"quantity":', tx.ints(self.log.aux[at]), "}")

    def checkout(self, rows: np.ndarray) -> pa.Array:
        cart = self.src.sessions.cart[self.session[rows]]
        value = _amount(self.src.carts.subtotal[cart])
        return tx.join(
            '{"cart_id":"', self.cart_id(rows), '","value":', value, f',"currency":"{CURRENCY}"}}'
        )

    def completed(self, rows: np.ndarray) -> pa.Array:
        orders = self.src.orders
        order = self.src.sessions.order[self.session[rows]]
        return tx.join(
            '{"order_id":"', orders.ids(order), '","cart_id":"', self.cart_id(rows),
            '","total":', _amount(orders.total[order]),
            ',"revenue":', _amount(orders.subtotal[order]),
            ',"discount":', _amount(orders.discount[order]),
            ',"coupon":', pc.fill_null(tx.quote(orders.coupons(order)), "null"),
            f',"currency":"{CURRENCY}","products":[', self._line_items(orders.cart[order]), "]}",
        )  # fmt: skip

    def _line_items(self, cart: np.ndarray) -> pa.Array:
        carts = self.src.carts
        items, _ = item_rows(carts.item_start, cart)
        frags = self.frags.item.take(pa.array(carts.product[items]))
        one = tx.join("{", frags, ',"quantity":', tx.ints(carts.quantity[items]), "}")
        counts = np.diff(carts.item_start)[cart]
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        return pc.binary_join(pa.ListArray.from_arrays(offsets, one), ",")

    def email(self, rows: np.ndarray) -> pa.Array:
        at = self.at(rows)
        campaign = self.log.aux[at].astype(np.int64)
        mixed = tx.mix64(self.person[rows] * CAMPAIGNS + campaign, self.src.salt + 4)
        product = np.maximum(self.log.product[at], 0)
        link = tx.join(',"link_url":"', self.src.catalog.urls.take(pa.array(product)), '"')
        link = tx.where(self.kind[rows] == CLICKED, link, "")
        info = self.frags.campaign_info.take(pa.array(campaign))
        return tx.join('{"email_id":"', tx.hex_ids(mixed, 16), '",', info, link, "}")


_PROPERTIES: Final = (
    "page", "identify", "page", "viewed", "added", "checkout", "completed", "email", "email",
)  # fmt: skip
"""The :class:`_Batch` method building each kind's properties, in kind order."""
_REFERRERS: Final = len(REFERRERS) + 2
"""Referrer choices: the external ones, the shop itself, none (direct)."""


def _referrer(b: _Batch, rows: np.ndarray) -> np.ndarray:
    """Referrer index per row: the session's for landing pages, the shop for the others."""
    ref = b.src.sessions.referrer[b.session[rows]]
    landing = b.kind[rows] == LANDING
    return np.where(landing, np.where(ref >= 0, ref, INTERNAL + 1), INTERNAL)


def _amount(values: np.ndarray) -> pa.Array:
    return pc.cast(tx.money(values), pa.string())


def _context(b: _Batch) -> pa.Array:
    """ip, locale, userAgent, page {url, referrer}, campaign — a struct of dictionary arrays."""
    n = len(b.kind)
    who = np.where(b.web, b.device.astype(np.int64), b.person.astype(np.int64) + (1 << 40))
    hashed = tx.mix64(who, b.src.salt + 3)
    ip = (hashed % np.uint64(len(IP_BLOCKS) * 254)).astype(np.int64)
    agent = ((hashed >> np.uint64(16)) % np.uint64(len(USER_AGENTS))).astype(np.int64)
    rows = np.arange(n)
    aux = b.log.aux[b.at(rows)].astype(np.int64)
    product_page = PRODUCT_PAGES + b.log.product[b.at(rows)].astype(np.int64)
    page = np.select(
        [b.kind == LANDING, b.kind == PAGE, b.kind == IDENTIFY, b.kind == VIEWED,
         b.kind == ADDED, b.kind == CHECKOUT, b.kind == COMPLETED],
        [aux, aux, LOGIN, product_page, product_page, CHECKOUT_P, THANK_YOU],
        -1,
    )  # fmt: skip
    referrer = np.where(b.web, _referrer(b, rows), -1)
    referrer = np.where(referrer == INTERNAL + 1, -1, referrer)
    session_campaign = b.src.sessions.campaign[b.session]
    campaign = np.where(
        b.web,
        np.where(b.kind == LANDING, session_campaign, -1),
        len(UTM_CAMPAIGNS) + aux,
    )
    f = b.frags
    return pa.StructArray.from_arrays(
        [
            tx.dictionary(f.ips, ip),
            tx.dictionary([c.locale for c in COUNTRIES], b.src.people.country[b.person]),
            tx.dictionary(USER_AGENTS, agent),
            _struct({"url": f.page_urls, "referrer": f.referrers}, page, referrer=referrer),
            _struct(f.campaigns, campaign),
        ],
        names=["ip", "locale", "userAgent", "page", "campaign"],
    )


def _struct(
    values: dict[str, list[str]], index: np.ndarray, *, referrer: np.ndarray | None = None
) -> pa.Array:
    """A struct whose fields are dictionary arrays over ``values``; null where ``index`` < 0."""
    children = []
    for name, choices in values.items():
        pick = referrer if name == "referrer" and referrer is not None else index
        children.append(tx.dictionary(choices, pick))
    return pa.StructArray.from_arrays(children, names=list(values), mask=pa.array(index < 0))


def _traits(b: _Batch) -> pa.Array:
    """email (as the shop holds it), firstName, lastName — on identify calls only."""
    rows = np.flatnonzero(b.kind == IDENTIFY)
    who = b.person[rows]
    people, n = b.src.people, len(b.kind)
    values = {
        "email": people.emails(who, b.src.accounts.shop_dirt[who]),
        "firstName": people.first_names(who),
        "lastName": people.last_names(who),
    }
    mask = np.ones(n, bool)
    mask[rows] = False
    return pa.StructArray.from_arrays(
        [tx.scatter(n, rows, v) for v in values.values()], names=list(values), mask=pa.array(mask)
    )


class Fragments:
    """Values shared by many events: JSON fragments per product and page, dictionaries."""

    def __init__(self, src: Sources) -> None:
        cat = src.catalog
        category = tx.pick([c.name for c in CATEGORIES], cat.category)
        self.item = tx.join(
            '"product_id":"', cat.ids, '","sku":"', cat.skus, '","name":', tx.quote(cat.names),
            ',"category":"', category, '","price":', _amount(cat.price),
        )  # fmt: skip
        self.product = tx.join(self.item, f',"currency":"{CURRENCY}","url":"', cat.urls, '"')
        self.viewed = tx.join("{", self.product, "}")
        named = [*SITE_PAGES, *((c.name, f"/collections/{c.slug}") for c in CATEGORIES)]
        named += [LOGIN_PAGE, CHECKOUT_PAGE, THANK_YOU_PAGE]
        titles = [f"{t} | Demo Shop" for t, _ in named]
        self.page_urls = [f"{SHOP_URL}{p}" for _, p in named] + cat.urls.to_pylist()
        self.referrers = [*REFERRERS, f"{SHOP_URL}/"]
        refs = [f'"{r}"' for r in self.referrers] + ["null"]
        self.page_properties = pa.array(
            [
                f'{{"path":"{p}","title":"{t}","url":"{SHOP_URL}{p}","referrer":{r}}}'
                for (_, p), t in zip(named[:PAGES], titles, strict=False)
                for r in refs
            ]
        )
        self.ips = [f"{block}.{host}" for block in IP_BLOCKS for host in range(1, 255)]
        self.campaigns = {
            "source": [s for s, _, _ in UTM_CAMPAIGNS] + ["newsletter"] * CAMPAIGNS,
            "medium": [m for _, m, _ in UTM_CAMPAIGNS] + ["email"] * CAMPAIGNS,
            "name": [c for _, _, c in UTM_CAMPAIGNS] + [_campaign_id(k) for k in range(CAMPAIGNS)],
        }
        self.campaign_info = pa.array(
            [
                f'"campaign_id":"{_campaign_id(k)}","campaign_name":"Fortnightly picks #{k + 1}",'
                f'"email_subject":"{EMAIL_SUBJECTS[k % len(EMAIL_SUBJECTS)]}"'
                for k in range(CAMPAIGNS)
            ]
        )


def _campaign_id(k: int) -> str:
    return f"cmp_{k + 1:03d}"


def _page_names() -> list[str]:
    return [t for t, _ in SITE_PAGES] + [c.name for c in CATEGORIES]
