"""Personal discount codes: unique, unguessable, single-use, with an expiry.

**Issuing** is idempotent per request key (journey, step, customer, trigger …). The code is the
HMAC-SHA256 of the key under the project's ``signing_key``, its first 60 bits written as 12
characters of Crockford's base 32 (digits and capitals without I, L, O, U: nothing to misread).
Asking again with the same key — after a crash, or from a second process at the same time —
derives the same code; the insert does nothing on the primary key and the stored row is read back.
Without the key nobody can derive or guess a code (2⁶⁰ possibilities). Two keys whose codes
collide (about one chance in 2⁶⁰ per pair) are told apart by the stored ``idempotency_key``: the
later one derives its next candidate (``attempt`` 1, 2 …), again deterministically.

A code's value comes from its campaign (``discounts:`` in ``personify.yml``): the first tier whose
``min_engagement`` the customer's ``engagement_score`` reaches.

**Redeeming** is a conditional update (not redeemed yet, not expired), so of two concurrent
redemptions exactly one wins. :func:`redeem_from_orders` does it set-wise from the orders and
``Order Completed`` events that name a code (``orders.discount_code``, ``properties.coupon``).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa

from personify.audiences.schedule import parse_duration
from personify.config import DiscountCampaign, DiscountTier, Project
from personify.delivery.tokens import project_key
from personify.errors import ConfigError, WarehouseError
from personify.messages.labels import DiscountLabel
from personify.offers._sql import UNNEST
from personify.warehouse import Warehouse, table
from personify.warehouse.retry import is_write_conflict
from personify.warehouse.sqltext import prop

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base 32: no I, L, O or U."""
CODE_LENGTH = 12
"""Characters in a code (5 bits each: 60 bits)."""
MAX_ATTEMPTS = 8
"""Candidates tried per key before giving up (a second collision is already ~2⁻⁶⁰)."""
MAX_ROUNDS = 32
"""Insert rounds per call (concurrent writers of the same codes make a round start again)."""
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})

RedeemReason = Literal["unknown", "expired", "already_redeemed"]


def derive_code(key: bytes, idempotency_key: str, attempt: int = 0) -> str:
    """The code of ``idempotency_key`` under ``key`` (its ``attempt``-th candidate)."""
    message = b"discount\0" + idempotency_key.encode("utf-8")
    if attempt:
        message += b"\0" + str(attempt).encode("ascii")
    digest = hmac.new(key, message, hashlib.sha256).digest()
    n = int.from_bytes(digest[:8], "big") >> (64 - 5 * CODE_LENGTH)
    return "".join(ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(CODE_LENGTH)))


def normalize_code(text: str) -> str:
    """A code as a person may type it (lower case, dashes, spaces, O for 0, I or L for 1) in
    the stored form."""
    return text.strip().upper().translate(_CONFUSABLE)


def expires_in(campaign: DiscountCampaign) -> timedelta:
    """How long the campaign's codes stay valid."""
    return parse_duration(campaign.expires_in)


def renew_margin(campaign: DiscountCampaign) -> timedelta:
    """How close to its expiry a code asked for again is renewed: ``renew_within``, at most half
    of ``expires_in`` (a code just issued is never renewed)."""
    return min(parse_duration(campaign.renew_within), expires_in(campaign) / 2)


def tier_for(campaign: DiscountCampaign, engagement: float | None) -> DiscountTier | None:
    """The first tier whose ``min_engagement`` ``engagement`` reaches (none counts as 0)."""
    score = 0.0 if engagement is None else float(engagement)
    for tier in campaign.tiers:
        if score >= tier.min_engagement:
            return tier
    return None


def label(value: float, kind: str, currency: str = "EUR") -> DiscountLabel:
    """``10% off`` or ``5.00 EUR off`` — a :class:`DiscountLabel`: rendering writes it in the
    template's language (``10 % de réduction``)."""
    if kind == "percent":
        return DiscountLabel(f"{value:g}% off", value, kind, currency)
    return DiscountLabel(f"{value:.2f} {currency} off", value, kind, currency)


def campaign_settings(project: Project, campaign: str) -> DiscountCampaign:
    """The campaign's settings. Raises :class:`ConfigError` naming the missing key."""
    try:
        return project.config.discounts[campaign]
    except KeyError:
        known = ", ".join(sorted(project.config.discounts)) or "none"
        raise ConfigError(
            f"no discount campaign {campaign!r} (campaigns: {known})",
            file=str(project.file),
            key=f"discounts.{campaign}",
            hint=f"add `discounts: {{{campaign}: {{expires_in: 7d, tiers: [{{percent: 10}}]}}}}`",
        ) from None


_COLUMNS = "idempotency_key, code, customer_id, campaign, value, kind, expires_at"


def issue_codes(
    wh: Warehouse,
    project: Project,
    requests: Sequence[tuple[str, str, str]],
    *,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """A code for each ``(idempotency_key, customer_id, campaign)``, issued at ``now``.

    Returns, per idempotency key, ``{code, label, value, kind, currency, expires_at, campaign,
    customer_id}``. A key asked before gets its stored code back (even if the campaign's
    settings changed since) and nothing is inserted — but a code not redeemed that has expired,
    or expires within the campaign's :func:`renew_margin` of ``now`` (an email retried for days
    after its server deferred it), gets ``expires_in`` more from ``now`` first: the same code,
    alive when the email goes out. At most five statements for the whole batch (read, engagement
    scores, insert, renew, read back), whatever its size."""
    wanted, settings, stored, missing = _asked(wh, project, requests)
    if missing:
        _insert(wh, project, wanted, missing, settings, now, stored)
    _renew(wh, settings, stored, now)
    return _labelled(wanted, settings, stored)


def _due_renewal(
    settings: dict[str, DiscountCampaign], stored: dict[str, dict[str, Any]], now: datetime
) -> dict[str, list[str]]:
    """Campaign → the keys among ``stored`` whose code expires within its renewal margin."""
    due: dict[str, list[str]] = {}
    for key, row in stored.items():
        config = settings.get(str(row["campaign"]))
        expires = row.get("expires_at")
        if config is None or not isinstance(expires, datetime):
            continue
        expires = expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)
        if expires < now + renew_margin(config):
            due.setdefault(str(row["campaign"]), []).append(key)
    return due


def _renew(
    wh: Warehouse,
    settings: dict[str, DiscountCampaign],
    stored: dict[str, dict[str, Any]],
    now: datetime,
) -> None:
    """Give the codes of ``stored`` about to expire (not redeemed) ``expires_in`` more from
    ``now``, one UPDATE per campaign, and read them back into ``stored``."""
    due = _due_renewal(settings, stored, now)
    for campaign, keys in sorted(due.items()):
        until = now + expires_in(settings[campaign])
        wh.execute(
            "UPDATE discount_codes SET expires_at = ? WHERE idempotency_key IN "
            f"(SELECT {UNNEST}) AND redeemed_at IS NULL AND expires_at < ?",
            [until, sorted(keys), until],
        )
        stored.update(_stored(wh, keys))


def _asked(
    wh: Warehouse, project: Project, requests: Sequence[tuple[str, str, str]]
) -> tuple[
    dict[str, tuple[str, str]],
    dict[str, DiscountCampaign],
    dict[str, dict[str, Any]],
    list[str],
]:
    """``(wanted, settings, stored, missing)`` for ``requests``: the first ``(customer,
    campaign)`` per key, the campaigns' settings, the codes already stored by key, and the keys
    that have none yet."""
    wanted: dict[str, tuple[str, str]] = {}
    for key, customer_id, campaign in requests:
        wanted.setdefault(key, (customer_id, campaign))
    settings = {c: campaign_settings(project, c) for _, c in wanted.values()}
    stored = _stored(wh, list(wanted))
    return wanted, settings, stored, [k for k in wanted if k not in stored]


def _labelled(
    wanted: dict[str, tuple[str, str]],
    settings: dict[str, DiscountCampaign],
    stored: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Per wanted key, its code's row with its ``label`` (``10% off``) and the campaign's
    ``currency`` (what an amount off is in), without the key."""
    out: dict[str, dict[str, Any]] = {}
    for key in wanted:
        row = stored[key]
        config = settings.get(row["campaign"])
        currency = config.currency if config is not None else "EUR"
        out[key] = {**row, "label": label(row["value"], row["kind"], currency)}
        out[key]["currency"] = currency
        del out[key]["idempotency_key"]
    return out


PREVIEW_CODE = "PREVIEW-CODE"
"""What a preview shows instead of a code not issued yet (never a real code: it has a dash and
letters Crockford's alphabet lacks)."""


def preview_codes(
    wh: Warehouse,
    project: Project,
    requests: Sequence[tuple[str, str, str]],
    *,
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """What :func:`issue_codes` would give each request, writing nothing (a preview).

    A key already issued gets its stored code, exactly as :func:`issue_codes` returns it. Any
    other gets the campaign's value for the customer (its tier) and an expiry from ``now``, with
    ``code`` the placeholder :data:`PREVIEW_CODE` and ``preview: True``: a preview must not
    issue, reserve or reveal a code that a later send would use. A stored code due for renewal
    shows the expiry the send would give it."""
    wanted, settings, stored, missing = _asked(wh, project, requests)
    for campaign, keys in _due_renewal(settings, stored, now).items():
        for k in keys:
            stored[k] = {**stored[k], "expires_at": now + expires_in(settings[campaign])}
    engagement = _engagement(wh, sorted({wanted[k][0] for k in missing})) if missing else {}
    for k in missing:
        row = _new_row(b"", k, *wanted[k], settings, engagement, now, 0)
        del row["created_at"]
        stored[k] = {**row, "code": PREVIEW_CODE, "preview": True}
    return _labelled(wanted, settings, stored)


def _insert(
    wh: Warehouse,
    project: Project,
    wanted: dict[str, tuple[str, str]],
    missing: list[str],
    settings: dict[str, DiscountCampaign],
    now: datetime,
    stored: dict[str, dict[str, Any]],
) -> None:
    """Insert codes for the ``missing`` keys (on conflict: nothing) and read them back into
    ``stored``. A key still missing after a clean insert lost its code to another key (a
    collision): it moves to its next candidate. An insert refused because a concurrent writer
    stored the same code first (DuckDB checks keys at commit) is simply tried again."""
    secret = project_key(project)
    engagement = _engagement(wh, sorted({wanted[k][0] for k in missing}))
    attempts = dict.fromkeys(missing, 0)
    for _ in range(MAX_ROUNDS):
        rows = [
            _new_row(secret, k, *wanted[k], settings, engagement, now, attempts[k]) for k in missing
        ]
        try:
            wh.load(table("discount_codes"), pa.Table.from_pylist(rows), on_conflict="ignore")
            raced = False
        except WarehouseError as e:
            if not _raced(e):
                raise
            raced = True
            time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not a secret
        stored.update(_stored(wh, missing))
        missing = [k for k in missing if k not in stored]
        if not missing:
            return
        if not raced:
            for k in missing:
                attempts[k] += 1
            if max(attempts[k] for k in missing) >= MAX_ATTEMPTS:
                break
    raise WarehouseError(
        f"could not store discount codes for {len(missing)} request(s)",
        hint="is discount_codes.code still the primary key? Try again.",
    )


def _raced(error: WarehouseError) -> bool:
    """A write that lost a race (:func:`~personify.warehouse.retry.is_write_conflict`), or an
    insert refused because a concurrent writer stored the same key first (DuckDB checks keys at
    commit). Not a general retry rule: elsewhere a duplicate key may be a real one."""
    if is_write_conflict(error):
        return True
    text = str(error).lower()
    return "constraint violation" in text or "duplicate key" in text


def _stored(wh: Warehouse, keys: list[str]) -> dict[str, dict[str, Any]]:
    rows = wh.fetch(
        f"SELECT {_COLUMNS} FROM discount_codes WHERE idempotency_key IN (SELECT {UNNEST})",
        [keys],
    )
    names = [c.strip() for c in _COLUMNS.split(",")]
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        record["value"] = float(record["value"]) if record["value"] is not None else None
        out[record["idempotency_key"]] = record
    return out


def _engagement(wh: Warehouse, customer_ids: list[str]) -> dict[str, float | None]:
    rows = wh.fetch(
        "SELECT customer_id, engagement_score FROM customers "
        f"WHERE customer_id IN (SELECT {UNNEST})",
        [customer_ids],
    )
    return {str(c): (None if s is None else float(s)) for c, s in rows}


def _new_row(
    secret: bytes,
    key: str,
    customer_id: str,
    campaign: str,
    settings: dict[str, DiscountCampaign],
    engagement: dict[str, float | None],
    now: datetime,
    attempt: int,
) -> dict[str, Any]:
    config = settings[campaign]
    tier = tier_for(config, engagement.get(customer_id))
    if tier is None:  # every tier asks for more engagement than the customer has: the last one
        tier = config.tiers[-1]
    kind = "percent" if tier.percent is not None else "amount"
    value = tier.percent if tier.percent is not None else tier.amount
    return {
        "code": derive_code(secret, key, attempt),
        "customer_id": customer_id,
        "campaign": campaign,
        "value": float(value or 0),
        "kind": kind,
        "created_at": now,
        "expires_at": now + expires_in(config),
        "idempotency_key": key,
    }


@dataclass(frozen=True)
class RedeemResult:
    """The outcome of one redemption."""

    code: str
    """The code as stored (normalized)."""
    ok: bool
    """Whether the order may have the discount: redeemed now, or earlier by this same order."""
    reason: RedeemReason | None = None
    """Why not: ``unknown`` (no such code), ``expired``, ``already_redeemed`` (by another
    order)."""
    customer_id: str | None = None
    campaign: str | None = None
    value: float | None = None
    kind: str | None = None
    order_id: str | None = None
    """The order holding the redemption."""
    redeemed_at: datetime | None = None


def redeem(wh: Warehouse, code: str, *, order_id: str, at: datetime) -> RedeemResult:
    """Redeem ``code`` for ``order_id`` at ``at``: once, before it expires.

    Replaying the same order's redemption is ``ok`` (idempotent); another order is refused
    with ``already_redeemed``."""
    stored = normalize_code(code)
    for round_ in range(MAX_ROUNDS):
        try:
            wh.execute(
                "UPDATE discount_codes SET redeemed_at = ?, order_id = ? "
                "WHERE code = ? AND redeemed_at IS NULL AND expires_at > ?",
                [at, order_id, stored, at],
            )
            break
        except WarehouseError as e:  # a concurrent redemption of the same code (DuckDB)
            if not _raced(e) or round_ == MAX_ROUNDS - 1:
                raise
            time.sleep(random.uniform(0.001, 0.02))  # noqa: S311 - jitter, not a secret
    rows = wh.fetch(
        "SELECT customer_id, campaign, value, kind, expires_at, redeemed_at, order_id "
        "FROM discount_codes WHERE code = ?",
        [stored],
    )
    if not rows:
        return RedeemResult(stored, False, "unknown")
    customer_id, campaign, value, kind, expires_at, redeemed_at, holder = rows[0]
    common: dict[str, Any] = {
        "customer_id": customer_id,
        "campaign": campaign,
        "value": None if value is None else float(value),
        "kind": kind,
        "order_id": holder,
        "redeemed_at": redeemed_at,
    }
    if redeemed_at is not None:
        if holder == order_id:
            return RedeemResult(stored, True, **common)
        return RedeemResult(stored, False, "already_redeemed", **common)
    del expires_at  # not redeemed, so the update's expiry condition failed
    return RedeemResult(stored, False, "expired", **common)


def _normalized_sql(expr: str) -> str:
    return f"replace(replace(upper(trim({expr})), '-', ''), ' ', '')"


def redeem_from_orders(wh: Warehouse, *, now: datetime) -> int:
    """Mark codes redeemed by the orders (``orders.discount_code``) and ``Order Completed``
    events (``properties.coupon``) up to ``now`` that name them, set-wise in one statement.

    A code counts as redeemed by the earliest order naming it that was placed while it was
    valid (after it was issued, before it expired); codes already redeemed are left alone.
    Returns how many codes were marked."""
    coupon = prop("coupon")
    sql = (
        "UPDATE discount_codes SET redeemed_at = m.used_at, order_id = m.order_id FROM ("
        "SELECT code, order_id, used_at FROM (SELECT u.code, u.order_id, u.used_at, "
        "row_number() OVER (PARTITION BY u.code ORDER BY u.used_at, u.order_id) AS pos FROM ("
        f"SELECT {_normalized_sql('o.discount_code')} AS code, o.order_id, "
        "o.created_at AS used_at FROM orders o WHERE o.discount_code IS NOT NULL "
        "AND o.created_at <= CAST(? AS TIMESTAMPTZ) UNION ALL "
        f"SELECT {_normalized_sql(coupon)}, coalesce({prop('order_id')}, e.message_id), "
        "e.timestamp FROM events e WHERE e.type = 'track' AND e.event = 'Order Completed' "
        f"AND {coupon} IS NOT NULL AND e.timestamp <= CAST(? AS TIMESTAMPTZ)) u "
        "JOIN discount_codes c ON c.code = u.code WHERE c.redeemed_at IS NULL "
        "AND u.used_at >= c.created_at AND u.used_at < c.expires_at) r WHERE pos = 1) m "
        "WHERE discount_codes.code = m.code AND discount_codes.redeemed_at IS NULL"
    )
    return max(wh.execute(sql, [now, now]), 0)
