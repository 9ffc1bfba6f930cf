"""The event log: every web and email event of the world, kept compact.

Ten million events as Python objects or even as Arrow strings would not fit the memory goal, so
the log holds a few numpy columns per event (time, kind, owner, product, …) and renders
Segment-shaped Arrow record batches on demand (:meth:`EventLog.batches`, see
:mod:`personify.demo.segment`). Rendering is deterministic: the same log gives the same bytes
whatever the batch size.

A sprinkle of bad events is mixed in, each a flawed copy of a real one: no ``messageId``, neither
``userId`` nor ``anonymousId``, a ``Product Added`` without ``cart_id``; and a few exact
duplicates (same ``messageId``), as an SDK retrying would send.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa

from personify.demo import _text as tx
from personify.demo.accounts import Accounts
from personify.demo.behaviour import ADDED, CLICKED, OPENED, Behaviour, Carts, Sessions
from personify.demo.catalog import Catalog
from personify.demo.commerce import Orders
from personify.demo.email import EmailEvents
from personify.demo.people import People

if TYPE_CHECKING:
    from personify.demo.segment import Fragments

OK, NO_MESSAGE_ID, NO_IDENTITY, NO_CART_ID, DUPLICATE = range(5)
"""Flaws: what is wrong with an event (``DUPLICATE`` marks a retried copy)."""
FLAW_RATE: Final = 0.001
"""Share of events copied with each flaw (and as duplicates)."""
EMAIL_MESSAGES: Final = 1 << 40
"""Message numbers of email events start here (web events from 0): ids never collide."""

_DICT = pa.dictionary(pa.int32(), pa.string())
SCHEMA: Final = pa.schema(
    [
        ("messageId", pa.string()),
        ("type", _DICT),
        ("event", _DICT),
        ("name", _DICT),
        ("anonymousId", pa.string()),
        ("userId", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("properties", pa.string()),
        (
            "context",
            pa.struct(
                [
                    ("ip", _DICT),
                    ("locale", _DICT),
                    ("userAgent", _DICT),
                    ("page", pa.struct([("url", _DICT), ("referrer", _DICT)])),
                    (
                        "campaign",
                        pa.struct([("source", _DICT), ("medium", _DICT), ("name", _DICT)]),
                    ),
                ]
            ),
        ),
        (
            "traits",
            pa.struct(
                [("email", pa.string()), ("firstName", pa.string()), ("lastName", pa.string())]
            ),
        ),
    ]
)
"""A rendered batch: the Segment payload fields. ``timestamp`` is a UTC timestamp, ``properties``
JSON text, ``context`` and ``traits`` structs; the rest text (some of it dictionary-encoded)."""


@dataclass(frozen=True)
class Sources:
    """What rendering looks up: the world's other parts (not the behaviour's per-event arrays:
    the log has its own, and the world need not hold both while it is written)."""

    people: People
    catalog: Catalog
    sessions: Sessions
    carts: Carts
    orders: Orders
    accounts: Accounts
    now_ms: int
    salt: int

    @functools.cached_property
    def fragments(self) -> Fragments:
        """JSON fragments shared by many events (built once, on first use)."""
        from personify.demo.segment import Fragments

        return Fragments(self)


@dataclass(frozen=True)
class EventLog:
    """All events, session by session in order of session start (each session's events in time
    order), email events merged in by time: nearly sorted by ``timestamp``."""

    ts: np.ndarray
    kind: np.ndarray
    owner: np.ndarray
    """Session index for web events, person index for email events."""
    product: np.ndarray
    aux: np.ndarray
    """Quantity (Product Added), page index (pages) or campaign index (email)."""
    user: np.ndarray
    """The event carries ``userId``."""
    flaw: np.ndarray
    msg: np.ndarray
    """Message number: the ``messageId`` is derived from it (duplicates share it)."""
    sources: Sources = field(repr=False)

    @property
    def num_rows(self) -> int:
        return len(self.ts)

    def flaws(self) -> dict[str, int]:
        """How many events carry each flaw."""
        counts = np.bincount(self.flaw, minlength=5)
        names = ("ok", "missing_message_id", "missing_identity", "missing_cart_id", "duplicate")
        return {name: int(counts[i]) for i, name in enumerate(names)}

    def batches(self, rows: int = 500_000) -> Iterator[pa.RecordBatch]:
        """Rendered record batches of at most ``rows`` events, in log order."""
        from personify.demo.segment import render

        for lo in range(0, self.num_rows, rows):
            yield render(self, lo, min(lo + rows, self.num_rows))

    def to_table(self) -> pa.Table:
        """The whole log rendered at once (small worlds only)."""
        return pa.Table.from_batches(list(self.batches()), schema=SCHEMA)


def web_columns(rng: np.random.Generator, behaviour: Behaviour) -> dict[str, np.ndarray]:
    """The web shop's events as :class:`EventLog` columns: session by session, in order of
    session start; flawed copies and retried duplicates at the end (they arrive late)."""
    web = behaviour.events
    n = len(web.ts)
    columns = {
        "ts": web.ts,
        "kind": web.kind.astype(np.int8),
        "owner": web.session.astype(np.int32),
        "product": web.product.astype(np.int32),
        "aux": np.where(web.kind == ADDED, web.quantity, web.page).astype(np.int16),
        "user": web.user,
        "flaw": np.zeros(n, np.int8),
        "msg": np.arange(n, dtype=np.int64),
    }
    return _with_flaws(rng, columns)


def email_columns(rng: np.random.Generator, email: EmailEvents) -> dict[str, np.ndarray]:
    """The email service's engagement events as :class:`EventLog` columns, in time order;
    flawed copies at the end."""
    order = tx.stable_argsort(email.ts)
    n = len(order)
    columns = {
        "ts": email.ts[order],
        "kind": np.where(email.clicked, CLICKED, OPENED).astype(np.int8)[order],
        "owner": email.person[order].astype(np.int32),
        "product": email.product[order].astype(np.int32),
        "aux": email.campaign[order].astype(np.int16),
        "user": np.ones(n, bool),
        "flaw": np.zeros(n, np.int8),
        "msg": EMAIL_MESSAGES + np.arange(n, dtype=np.int64),
    }
    return _with_flaws(rng, columns)


def _with_flaws(rng: np.random.Generator, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(columns["ts"])
    k = min(n, max(1, int(n * FLAW_RATE)))
    added = np.flatnonzero(columns["kind"] == ADDED)
    picks = [
        (NO_MESSAGE_ID, rng.choice(n, k, replace=False)),
        (NO_IDENTITY, rng.choice(n, k, replace=False)),
        (NO_CART_ID, rng.choice(added, min(k, len(added)), replace=False)),
        (DUPLICATE, rng.choice(n, k, replace=False)),
    ]
    rows = np.concatenate([np.sort(p) for _, p in picks])
    flaw = np.concatenate([np.full(len(p), f, np.int8) for f, p in picks])
    extra = {name: values[rows] for name, values in columns.items()}
    extra["flaw"] = flaw
    fresh = flaw != DUPLICATE
    first = int(columns["msg"][-1]) + 1 if n else 0
    extra["msg"] = np.where(fresh, first + np.arange(len(rows)), extra["msg"])
    return {name: np.concatenate([columns[name], extra[name]]) for name in columns}
