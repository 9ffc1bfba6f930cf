"""Customer records as the shop, the CRM and the consent log hold them.

* **shop customers** (a Shopify-style customer export, CSV): every customer, keyed by a 13-digit
  shop id — the ``userId`` the web shop sends; created when they first logged in.
* **CRM contacts** (HubSpot-style, JSON Lines with a nested ``properties`` object): 88 % of the
  customers, under a different (6–7 digit) id, with an independently dirtied email and the phone
  written another way.
* **CRM updates**: about 7 % of contacts changed later in the CRM only — a new phone or a new last
  name, with their own ``updatedAt`` — so the sources disagree.
* **consents** (CSV): purpose ``email_marketing``, channel ``email`` — 80 % granted (92 % of vip),
  8 % granted then revoked, the rest never opted in (no row).

Every table is sorted by its update time (stable ids), as a mock API would page it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import _text as tx
from personify.demo._vocab import LAST_NAMES
from personify.demo.people import (
    CHAMPION,
    DAY_MS,
    HOUR_MS,
    VIP,
    People,
    dirt,
    format_phones,
    phone_numbers,
)

GRANTED, REVOKED, NO_CONSENT = 0, 1, 2


@dataclass(frozen=True)
class Accounts:
    shop_customers: pa.Table
    crm_contacts: pa.Table
    crm_updates: pa.Table
    consents: pa.Table
    shop_dirt: np.ndarray
    """How the shop holds each customer's email (see :func:`personify.demo.people.dirt`)."""
    consent_from: np.ndarray
    consent_until: np.ndarray
    """Per customer: the window in which they could receive marketing email (empty if none)."""


def build_accounts(
    rng: np.random.Generator,
    people: People,
    registered: np.ndarray,
    buyers: np.ndarray,
    now_ms: int,
) -> Accounts:
    """The shop's, the CRM's and the consent log's view of the customers."""
    n = people.customers
    active_until = np.maximum(people.window_end[:n], registered)
    shop_dirt = dirt(rng, n)
    status, opted_in, changed = _consent_state(rng, people, registered, now_ms)
    updated = registered + (rng.random(n) * (active_until - registered)).astype(np.int64)
    rows = tx.stable_argsort(updated)
    first = people.first_names(rows)
    shop = pa.table(
        {
            "id": people.shop_ids(rows),
            "email": people.emails(rows, shop_dirt[rows]),
            "first_name": tx.where(rng.random(n) < 0.04, pc.utf8_lower(first), first),
            "last_name": people.last_names(rows),
            "phone": people.phones(rng, rows),
            "city": people.cities(rows),
            "country": people.country_codes(rows),
            "accepts_email_marketing": pa.array(status[rows] == GRANTED),
            "created_at": tx.iso(registered[rows], millis=False),
            "updated_at": tx.iso(updated[rows], millis=False),
        }
    )
    consented = np.flatnonzero(status != NO_CONSENT)
    consented = consented[tx.stable_argsort(changed[consented])]
    crm, crm_rows, crm_updated = _crm_contacts(
        rng, people, registered, active_until, buyers, now_ms
    )
    return Accounts(
        shop_customers=shop,
        crm_contacts=crm,
        crm_updates=_crm_updates(rng, people, crm, crm_rows, crm_updated, now_ms),
        consents=_consents(rng, people, consented, shop_dirt, status, opted_in, changed),
        shop_dirt=shop_dirt,
        consent_from=np.where(status != NO_CONSENT, opted_in, 0),
        consent_until=np.where(status == GRANTED, now_ms, np.where(status == REVOKED, changed, 0)),
    )


def _consent_state(
    rng: np.random.Generator, people: People, registered: np.ndarray, now_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = people.customers
    u = rng.random(n)
    granted_rate = np.where(np.isin(people.cohort[:n], [VIP, CHAMPION]), 0.92, 0.80)
    status = np.where(
        u < granted_rate, GRANTED, np.where(u < granted_rate + 0.08, REVOKED, NO_CONSENT)
    )
    opted_in = registered + (rng.random(n) * HOUR_MS).astype(np.int64)
    revoked = opted_in + (rng.random(n) * np.maximum(now_ms - opted_in - 1000, 0)).astype(np.int64)
    return status, opted_in, np.where(status == REVOKED, revoked, opted_in)


def _consents(
    rng: np.random.Generator,
    people: People,
    rows: np.ndarray,
    shop_dirt: np.ndarray,
    status: np.ndarray,
    opted_in: np.ndarray,
    changed: np.ndarray,
) -> pa.Table:
    m = len(rows)
    return pa.table(
        {
            "customer_id": people.shop_ids(rows),
            "email": people.emails(rows, shop_dirt[rows]),
            "purpose": tx.dictionary(["email_marketing"], np.zeros(m, np.int32)).cast(pa.string()),
            "channel": tx.dictionary(["email"], np.zeros(m, np.int32)).cast(pa.string()),
            "status": tx.pick(["granted", "revoked"], status[rows]),
            "collected_via": tx.pick(["checkout", "newsletter_form"], rng.integers(0, 2, m)),
            "opted_in_at": tx.iso(opted_in[rows], millis=False),
            "updated_at": tx.iso(changed[rows], millis=False),
        }
    )


def _crm_contacts(
    rng: np.random.Generator,
    people: People,
    registered: np.ndarray,
    active_until: np.ndarray,
    buyers: np.ndarray,
    now_ms: int,
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """HubSpot-style contacts sorted by ``updatedAt``, the customer of each row, and each
    customer's CRM update time."""
    n = people.customers
    lead_first = rng.random(n) < 0.4
    early = (rng.uniform(0, 60, n) * DAY_MS).astype(np.int64)
    late = (rng.uniform(0, 2, n) * HOUR_MS).astype(np.int64)
    created = np.minimum(np.where(lead_first, registered - early, registered + late), now_ms - 1000)
    updated = created + (rng.random(n) * np.maximum(active_until - created, 0)).astype(np.int64)
    updated = np.minimum(updated, now_ms - 1000)
    stage = np.where(buyers, 2, np.where(rng.random(n) < 0.5, 1, 0))
    crm_dirt = dirt(rng, n)
    rows = np.flatnonzero(people.in_crm)
    rows = rows[tx.stable_argsort(updated[rows])]
    table = _contact_table(
        people,
        rows,
        properties={
            "email": people.emails(rows, crm_dirt[rows]),
            "firstname": people.first_names(rows),
            "lastname": people.last_names(rows),
            "phone": people.phones(rng, rows),
            "city": people.cities(rows),
            "country": people.country_codes(rows),
            "hs_timezone": people.timezones(rows),  # HubSpot's contact time zone
            "hs_language": people.locales(rows),  # HubSpot's contact language: fr-FR, en-GB …
            "lifecyclestage": tx.pick(["subscriber", "lead", "customer"], stage[rows]),
        },
        created=tx.iso(created[rows]),
        updated=tx.iso(updated[rows]),
    )
    return table, rows, updated


def _contact_table(
    people: People,
    rows: np.ndarray,
    *,
    properties: dict[str, pa.Array],
    created: pa.Array,
    updated: pa.Array,
) -> pa.Table:
    return pa.table(
        {
            "id": people.crm_ids(rows),
            "properties": pa.StructArray.from_arrays(
                list(properties.values()), names=list(properties)
            ),
            "createdAt": created,
            "updatedAt": updated,
            "archived": pa.array(np.zeros(len(rows), bool)),
        }
    )


def _crm_updates(
    rng: np.random.Generator,
    people: People,
    contacts: pa.Table,
    rows: np.ndarray,
    updated: np.ndarray,
    now_ms: int,
) -> pa.Table:
    """Later edits made in the CRM only: a new phone number or a new last name."""
    position = np.flatnonzero(rng.random(len(rows)) < 0.07)
    person = rows[position]
    span = now_ms - 1000 - updated[person]
    when = updated[person] + (rng.random(len(person)) * span).astype(np.int64)
    order = tx.stable_argsort(when)
    person, position, when = person[order], position[order], when[order]
    props = contacts.column("properties").combine_chunks().take(pa.array(position))
    fields = {name: props.field(name) for name in props.type.names}
    fresh = phone_numbers(rng, people.country[person])
    fresh = np.where(fresh == 0, people.phone[person], fresh)
    shift = rng.integers(1, len(LAST_NAMES), len(person))
    new_last = tx.pick([s for s, _ in LAST_NAMES], (people.last[person] + shift) % len(LAST_NAMES))
    phone_change = rng.random(len(person)) < 0.6
    fields["phone"] = tx.where(
        phone_change, format_phones(rng, fresh, people.country[person]), fields["phone"]
    )
    fields["lastname"] = tx.where(phone_change, fields["lastname"], new_last)
    return _contact_table(
        people,
        person,
        properties=fields,
        created=contacts.column("createdAt").combine_chunks().take(pa.array(position)),
        updated=tx.iso(when),
    )
