"""Support tickets (Zendesk-style), with the requester as a nested object.

About one ticket per five customers (vip write more). Old tickets are solved or closed, recent
ones still open; solved ones may carry a satisfaction rating. The requester is known by email
(as the shop or the CRM holds it, dirty) and, for most, by the CRM id (``external_id``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from personify.demo import _text as tx
from personify.demo._vocab import TICKET_SUBJECTS, TICKET_TAGS
from personify.demo.catalog import DAY_MS
from personify.demo.people import HOUR_MS, People, dirt

TICKET_RATE = np.array([0.6, 0.25, 0.2, 0.15, 0.05, 0.0, 0.8])
STATUSES = ("new", "open", "pending", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
SCORES = ("unoffered", "offered", "good", "bad")
CHANNELS = ("email", "web", "chat")


def build_tickets(
    rng: np.random.Generator, people: People, registered: np.ndarray, now_ms: int
) -> pa.Table:
    """``id, url, subject, status, priority, requester{name,email,external_id},
    satisfaction_rating{score}, via{channel}, tags, created_at, updated_at`` by ``updated_at``."""
    n_cust = people.customers
    count = rng.poisson(TICKET_RATE[people.cohort[:n_cust]])
    person = np.repeat(np.arange(n_cust), count)
    n = len(person)
    span = np.maximum(now_ms - HOUR_MS - registered[person], 0)
    created = registered[person] + (rng.random(n) * span).astype(np.int64)
    age = now_ms - created
    old = age > 14 * DAY_MS
    status = np.where(old, rng.choice([3, 4], n, p=[0.7, 0.3]), rng.integers(0, 4, n))
    done = status >= 3
    score = np.where(done, rng.choice(4, n, p=[0.2, 0.2, 0.5, 0.1]), 0)
    updated = np.minimum(created + (rng.uniform(0, 10, n) * DAY_MS).astype(np.int64), now_ms - 1)
    number = np.empty(n, np.int64)
    number[tx.stable_argsort(created)] = np.arange(n)
    ids = 10_001 + number
    from_crm = people.in_crm[person] & (rng.random(n) >= 0.2)
    requester_dirt = dirt(rng, n)
    priority = rng.choice(4, n, p=[0.3, 0.5, 0.15, 0.05])
    channel = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    subject = rng.integers(0, len(TICKET_SUBJECTS), n)
    rows = tx.stable_argsort(updated)
    who = person[rows]
    requester = pa.StructArray.from_arrays(
        [
            tx.join(people.first_names(who), " ", people.last_names(who)),
            people.emails(who, requester_dirt[rows]),
            tx.null_where(~from_crm[rows], people.crm_ids(who)),
        ],
        names=["name", "email", "external_id"],
    )
    return pa.table(
        {
            "id": pa.array(ids[rows]),
            "url": tx.join("https://support.example/api/v2/tickets/", tx.ints(ids[rows]), ".json"),
            "subject": tx.pick(TICKET_SUBJECTS, subject[rows]),
            "status": tx.pick(STATUSES, status[rows]),
            "priority": tx.pick(PRIORITIES, priority[rows]),
            "requester": requester,
            "satisfaction_rating": pa.StructArray.from_arrays(
                [tx.pick(SCORES, score[rows])], names=["score"]
            ),
            "via": pa.StructArray.from_arrays(
                [tx.pick(CHANNELS, channel[rows])], names=["channel"]
            ),
            "tags": _tags(rng, n),
            "created_at": tx.iso(created[rows], millis=False),
            "updated_at": tx.iso(updated[rows], millis=False),
        }
    )


def _tags(rng: np.random.Generator, n: int) -> pa.Array:
    count = rng.integers(0, 3, n)
    offsets = np.concatenate([[0], np.cumsum(count)]).astype(np.int32)
    values = tx.pick(TICKET_TAGS, rng.integers(0, len(TICKET_TAGS), int(offsets[-1])))
    return pa.ListArray.from_arrays(pa.array(offsets), values)
