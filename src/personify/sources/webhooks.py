"""Webhooks as a source (``kind: webhook``): signed deliveries, verified, deduplicated, stored.

Signature schemes, each verified over the **raw body** with constant-time comparison
(:func:`hmac.compare_digest`) against every configured secret (several during a rotation):

* ``shopify`` — ``X-Shopify-Hmac-Sha256``: base64 of HMAC-SHA256(secret, body). The delivery id
  is ``X-Shopify-Event-Id`` (with ``X-Shopify-Topic``: ``<topic>:<event id>``) when it is sent —
  Shopify resends an event with a new ``X-Shopify-Webhook-Id`` on some retries, its event id
  the same — else ``X-Shopify-Webhook-Id``; a receipt written under the webhook id (before the
  event id was preferred) still makes a resend a duplicate. A delivery whose
  ``X-Shopify-Triggered-At`` is further than ``tolerance`` from now is stale.
* ``stripe`` — ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]``: HMAC-SHA256(secret,
  ``"<t>.<body>"``) in hex; ``t`` within ``tolerance`` (300 s) of now. The id is the event's ``id``.
* ``standard`` — Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``
  (space-separated ``v1,<base64>`` values): HMAC-SHA256 of ``"<id>.<timestamp>.<body>"`` keyed
  with the base64 key after ``whsec_``; the timestamp within ``tolerance`` of now.

A forged, tampered or stale delivery raises :class:`SignatureError` (the route answers 401) and
changes nothing. A verified one is handled by :meth:`WebhookReceiver.receive`: in ONE warehouse
transaction its receipt is written to ``webhook_receipts`` (keyed by source and delivery id) and
its record mapped, validated and loaded exactly as REST records are
(:mod:`personify.sources.rest.mapping`) — or quarantined with the reason. A delivery already
received (a replay, a retry, the same delivery twice at once) finds its receipt and has no further
effect; per-source locks serialize concurrent deliveries inside the process, and the receipt's
primary key does it across processes. Only then does the route acknowledge.

Then the real-time path (:meth:`WebhookReceiver.refresh`) brings the customer up to date. It writes
what other writers write too — another delivery's apply, the tracking API's continuous mode, the
batch profile build, a sync re-storing the same order — so a transaction may lose a write-write
race (:mod:`personify.warehouse.retry`). It is then run again, whole, after a jittered
exponential backoff, for up to :data:`REALTIME_PATIENCE` seconds; the applies of one receiver run
one at a time — deliveries arriving together do not race each other, and what is pending when a
pass starts is applied in that one pass. Storing a delivery retries such a conflict the same way
(for :data:`STORE_PATIENCE` seconds) before the route gives up with a 503.

With ``serve --role ingest`` and ``bus: nats://…`` a verified delivery is not stored here: it is
published to the bus (:mod:`personify.realtime.bus`, message id = the source and delivery id) and
a worker receives it exactly as above
(:func:`personify.realtime.worker.webhook_handler`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
import pyarrow as pa

from personify import clock
from personify.config import WebhookSource, duration_seconds
from personify.errors import SourceError, Terminal
from personify.ingest import quarantine
from personify.session import Session
from personify.sources.rest.mapping import Target, load_records, rows_of, targets_for
from personify.sources.rest.paths import get_path
from personify.warehouse import Warehouse
from personify.warehouse.base import UNNEST
from personify.warehouse.retry import retry_conflicts
from personify.warehouse.schema import QUARANTINE, WEBHOOK_RECEIPTS

Outcome = Literal["accepted", "duplicate", "quarantined"]
_KEYS: Final = {"orders": "order_id", "customers": "customer_id", "events": "message_id"}
"""Tables the real-time path refreshes after a delivery, and the column naming the record."""
log = logging.getLogger(__name__)

REALTIME_PATIENCE: Final = 30.0
"""Seconds a real-time apply keeps retrying write-write conflicts before it gives up (logged; the
batch path then catches up)."""
STORE_PATIENCE: Final = 10.0
"""Seconds storing a delivery keeps retrying write-write conflicts (then the route answers 503)."""


class SignatureError(SourceError, Terminal):
    """The delivery is not signed by a configured secret, was tampered with, or is stale."""


@dataclass(frozen=True)
class Verified:
    """A delivery whose signature checked out."""

    delivery_id: str
    signed_at: datetime | None
    aliases: tuple[str, ...] = ()
    """Other ids the same delivery may have been received under (a Shopify delivery's webhook
    id, when its event id is the delivery id): a receipt under any of them is this delivery's."""


# ----------------------------------------------------------------------------------- schemes
def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _check_time(seconds: float, tolerance: float, now: float) -> None:
    if abs(now - seconds) > tolerance:
        when = f"{now - seconds:.0f} s ago" if seconds <= now else f"{seconds - now:.0f} s ahead"
        raise SignatureError(
            f"the delivery was signed {when} (tolerance {tolerance:g} s): "
            + ("stale or replayed" if seconds <= now else "the sender's clock is ahead")
        )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise SignatureError(f"the {name} header is missing")
    return value


def verify_shopify(
    headers: Mapping[str, str], body: bytes, secrets: list[str], *, tolerance: float, now: float
) -> Verified:
    given = _header(headers, "x-shopify-hmac-sha256").strip().encode()
    if not any(
        hmac.compare_digest(base64.b64encode(_hmac(s.encode(), body)), given) for s in secrets
    ):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match the body")
    webhook_id, event_id = headers.get("x-shopify-webhook-id"), headers.get("x-shopify-event-id")
    if not (webhook_id or event_id):
        raise SignatureError("the X-Shopify-Webhook-Id header is missing")
    delivery = webhook_id or ""
    aliases: tuple[str, ...] = ()
    if event_id:  # one event's retries share it; its webhook ids may differ
        topic = headers.get("x-shopify-topic")
        delivery = f"{topic}:{event_id}" if topic else event_id
        aliases = (webhook_id,) if webhook_id else ()
    signed_at = None
    if triggered := headers.get("x-shopify-triggered-at"):
        try:
            signed_at = clock.parse_instant(triggered)
        except ValueError:
            raise SignatureError("X-Shopify-Triggered-At is not an ISO 8601 time") from None
        _check_time(signed_at.timestamp(), tolerance, now)
    return Verified(delivery, signed_at, aliases)


def verify_stripe(
    headers: Mapping[str, str], body: bytes, secrets: list[str], *, tolerance: float, now: float
) -> Verified:
    header = _header(headers, "stripe-signature")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v.strip().encode() for k, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not signatures:
        raise SignatureError("Stripe-Signature has no t= timestamp or no v1= signature")
    stamp = stamps[0].strip()
    signed = f"{stamp}.".encode() + body
    expected = [_hmac(s.encode(), signed).hex().encode() for s in secrets]
    if not any(hmac.compare_digest(e, g) for e in expected for g in signatures):
        raise SignatureError("no v1 signature of Stripe-Signature matches the body")
    _check_time(int(stamp), tolerance, now)
    try:
        event_id = msgspec.json.decode(body).get("id")
    except (msgspec.DecodeError, AttributeError):
        event_id = None
    if not isinstance(event_id, str) or not event_id:
        event_id = hashlib.sha256(body).hexdigest()  # signed, but no id: the body is its id
    return Verified(event_id, datetime.fromtimestamp(int(stamp), clock.now().tzinfo))


def _standard_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise SignatureError("a Standard Webhooks secret must be whsec_<base64>") from None


def verify_standard(
    headers: Mapping[str, str], body: bytes, secrets: list[str], *, tolerance: float, now: float
) -> Verified:
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp").strip()
    given = _header(headers, "webhook-signature")
    if not stamp.isdigit():
        raise SignatureError("webhook-timestamp is not a number of seconds")
    signed = f"{msg_id}.{stamp}.".encode() + body
    candidates = [
        sig.encode()
        for version, _, sig in (p.partition(",") for p in given.split())
        if version == "v1"
    ]
    expected = [base64.b64encode(_hmac(_standard_key(s), signed)) for s in secrets]
    if not any(hmac.compare_digest(e, g) for e in expected for g in candidates):
        raise SignatureError("no v1 signature of webhook-signature matches the body")
    _check_time(int(stamp), tolerance, now)
    return Verified(msg_id, datetime.fromtimestamp(int(stamp), clock.now().tzinfo))


VERIFIERS: Final = {"shopify": verify_shopify, "stripe": verify_stripe, "standard": verify_standard}


def verify(
    source: WebhookSource, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> Verified:
    """Check a delivery's signature (and age) for ``source``; raise :class:`SignatureError`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    secrets = [s.reveal() for s in source.secrets]
    return VERIFIERS[source.scheme](
        lowered,
        body,
        secrets,
        tolerance=duration_seconds(source.tolerance),
        now=time.time() if now is None else now,
    )


# ----------------------------------------------------------------------- signing (senders)
def sign_shopify(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256`` for ``body`` (what Shopify sends; used by the demo)."""
    return base64.b64encode(_hmac(secret.encode(), body)).decode()


def sign_stripe(secret: str, body: bytes, timestamp: int) -> str:
    """``Stripe-Signature`` for ``body`` signed at ``timestamp``."""
    return f"t={timestamp},v1={_hmac(secret.encode(), f'{timestamp}.'.encode() + body).hex()}"


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` for a Standard Webhooks delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(_hmac(_standard_key(secret), signed)).decode()


# ---------------------------------------------------------------------------------- receiving
@dataclass
class Receipt:
    """What a verified delivery did."""

    outcome: Outcome
    delivery_id: str
    rows: int = 0
    quarantined: int = 0
    reason: str | None = None
    key: str | None = None
    """The stored record's key (order id, record id, message id), for the real-time path."""


@dataclass
class _Pending:
    """A stored record waiting for its real-time pass."""

    key: str
    applied: bool = False


@dataclass
class WebhookReceiver:
    """Stores verified deliveries of a project's webhook sources (thread-safe)."""

    session: Session
    conflicts: int = 0
    """Write-write conflicts met (and retried) so far, storing or applying."""
    failures: int = 0
    """Real-time passes given up (the batch path catches up with them)."""
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _targets: dict[str, list[Target]] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _realtime: threading.Lock = field(default_factory=threading.Lock)
    _pending: dict[str, list[_Pending]] = field(default_factory=dict)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _targets_of(self, source: WebhookSource) -> list[Target]:
        if source.name not in self._targets:
            targets = targets_for(
                source.name, "webhook", source.table, source.mapping, source.nested
            )
            for target in targets:
                target.open(clock.now())
            self._targets[source.name] = targets
        return self._targets[source.name]

    def close(self) -> None:
        for targets in self._targets.values():
            for target in targets:
                target.close()
        self._targets.clear()

    def receive(
        self, source: WebhookSource, verified: Verified, body: bytes, *, refresh: bool = True
    ) -> Receipt:
        """Store one verified delivery once (see the module docstring), then — unless
        ``refresh`` is false: call :meth:`refresh` after answering — bring the customers it
        touches up to date."""
        with self._lock(source.name):
            try:
                receipt = retry_conflicts(
                    lambda: self._receive(source, verified, body),
                    patience=STORE_PATIENCE,
                    on_conflict=self._conflict,
                )
            except Exception:
                if self._received(source.name, verified):
                    # another process stored it meanwhile (the receipt's key refused ours)
                    return Receipt("duplicate", verified.delivery_id)
                raise
        if refresh:
            self.refresh(source, receipt)
        return receipt

    def refresh(self, source: WebhookSource, receipt: Receipt) -> bool:
        """The real-time path for what an accepted delivery stored: its key joins the source's
        pending keys; one pass at a time per receiver applies every key pending (deliveries
        arriving together: one pass), run again on a write-write conflict (see the module
        docstring). Best effort: if it still fails, that is logged and the batch path catches
        up. Returns whether the key was applied (false too when there was nothing to apply)."""
        key = receipt.key
        if receipt.outcome != "accepted" or key is None or source.table not in _KEYS:
            return False
        mine = _Pending(key)
        with self._guard:
            self._pending.setdefault(source.name, []).append(mine)
        with self._realtime:  # an earlier pass may have applied ours meanwhile
            with self._guard:
                waiting = self._pending.pop(source.name, [])
            if waiting:
                applied = self._apply_keys(source, sorted({p.key for p in waiting}))
                for pending in waiting:
                    pending.applied = applied
        return mine.applied

    def _apply_keys(self, source: WebhookSource, keys: list[str]) -> bool:
        from personify.identity.sightings import Scope
        from personify.profiles import apply

        among = f"IN (SELECT {UNNEST})"
        if source.table == "orders":
            scope = Scope(orders=(f"order_id {among}", (keys,)))
        elif source.table == "customers":
            scope = Scope(records=(f"source = ? AND record_id {among}", (source.name, keys)))
        else:
            scope = Scope(events=(f"message_id {among}", (keys,)))
        try:
            retry_conflicts(
                lambda: apply(self.session, scope),
                patience=REALTIME_PATIENCE,
                on_conflict=self._conflict,
            )
        except Exception as e:  # stored already; the next run's batch path catches up
            with self._guard:
                self.failures += 1
            log.warning(
                "webhook %s: real-time update of %d record(s) failed (%s)",
                source.name,
                len(keys),
                type(e).__name__,
            )
            return False
        return True

    def _conflict(self, error: BaseException) -> None:
        with self._guard:
            self.conflicts += 1
        log.debug("webhook: a write-write conflict (%s); retrying", type(error).__name__)

    def _received(self, source: str, verified: Verified) -> bool:
        ids = (verified.delivery_id, *verified.aliases)
        found = self.session.warehouse.scalar(
            f"SELECT count(*) FROM {WEBHOOK_RECEIPTS.name} WHERE source = ? AND webhook_id IN "
            f"({', '.join('?' * len(ids))})",
            [source, *ids],
        )
        return bool(found)

    def _receive(self, source: WebhookSource, verified: Verified, body: bytes) -> Receipt:
        wh = self.session.warehouse
        now = clock.now()
        with wh.transaction():
            if self._received(source.name, verified):
                return Receipt("duplicate", verified.delivery_id)
            receipt = self._apply(source, verified, body, now)
            wh.execute(
                f"INSERT INTO {WEBHOOK_RECEIPTS.name} (source, webhook_id, received_at, "
                "signed_at, outcome, rows_loaded, rows_quarantined) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    source.name,
                    verified.delivery_id,
                    now,
                    verified.signed_at,
                    receipt.outcome,
                    receipt.rows,
                    receipt.quarantined,
                ],
            )
        return receipt

    def _apply(
        self, source: WebhookSource, verified: Verified, body: bytes, now: datetime
    ) -> Receipt:
        wh = self.session.warehouse
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError:
            payload = None
        record = get_path(payload, source.data_selector) if payload is not None else None
        if not isinstance(record, dict):
            reason = quarantine.MALFORMED_JSON
            what = "is not JSON" if payload is None else "holds no JSON object"
            where = f" at {source.data_selector!r}" if source.data_selector else ""
            self._quarantine(source, verified, body, reason, f"the body{where} {what}", now)
            return Receipt("quarantined", verified.delivery_id, 0, 1, reason)
        rows = quarantined = 0
        for target in self._targets_of(source):
            done = load_records(
                wh,
                target,
                [record],
                received_at=now,
                origin=verified.delivery_id,
                payload=body.decode("utf-8", "replace")[:100_000],
            )
            rows += done.loaded + done.duplicate
            quarantined += done.quarantined
        outcome: Outcome = "quarantined" if quarantined and not rows else "accepted"
        stored = self._key(source, record)
        return Receipt(outcome, verified.delivery_id, rows, quarantined, key=stored)

    def replay(self, source: WebhookSource, delivery_id: str, body: bytes) -> Receipt:
        """Apply a quarantined delivery again, with the source's mapping and rules as they are
        now (``personify quarantine replay``): in one transaction its quarantine rows are deleted,
        its body is mapped and loaded as on arrival — at its original arrival time — and its
        receipt records the new outcome. Rows still bad are quarantined again under the same ids
        (nothing doubles); a record loaded before is an upsert of itself. Replaying twice does
        nothing more."""
        wh = self.session.warehouse

        def once() -> Receipt:
            with wh.transaction():
                rows = delivery_rows(wh, source, delivery_id)
                received = wh.scalar(
                    f"SELECT received_at FROM {WEBHOOK_RECEIPTS.name} "
                    "WHERE source = ? AND webhook_id = ?",
                    [source.name, delivery_id],
                )
                at = received or min((r[1] for r in rows), default=None) or clock.now()
                ids = [r[0] for r in rows]
                if ids:
                    wh.execute(
                        f"DELETE FROM {QUARANTINE.name} WHERE id IN ({', '.join('?' * len(ids))})",
                        ids,
                    )
                receipt = self._apply(source, Verified(delivery_id, None), body, at)
                wh.execute(
                    f"UPDATE {WEBHOOK_RECEIPTS.name} SET outcome = ?, rows_loaded = ?, "
                    "rows_quarantined = ? WHERE source = ? AND webhook_id = ?",
                    [receipt.outcome, receipt.rows, receipt.quarantined, source.name, delivery_id],
                )
                return receipt

        with self._lock(source.name):
            return retry_conflicts(once, patience=STORE_PATIENCE, on_conflict=self._conflict)

    def _key(self, source: WebhookSource, record: dict[str, Any]) -> str | None:
        key = _KEYS.get(source.table)
        main = self._targets_of(source)[0]
        value = get_path(rows_of(main, [record])[0], main.mapping.get(key, key)) if key else None
        return None if value is None else str(value)

    def key_of(self, source: WebhookSource, body: bytes) -> str | None:
        """The key a delivery's record is stored under (order id, record id, message id), read
        from its body again — a redelivered one's, to apply it once more. ``None`` when the body
        holds no record, or ``source`` stores into another table."""
        try:
            record = get_path(msgspec.json.decode(body), source.data_selector)
        except msgspec.DecodeError:
            return None
        if not isinstance(record, dict) or source.table not in _KEYS:
            return None
        try:
            return self._key(source, record)
        except (IndexError, KeyError, TypeError, ValueError):  # a record the mapping cannot
            return None  # read (quarantined when it was first delivered): nothing to apply

    def _quarantine(
        self,
        source: WebhookSource,
        verified: Verified,
        body: bytes,
        reason: str,
        detail: str,
        now: datetime,
    ) -> None:
        row = {
            "id": quarantine.quarantine_id(source.name, "webhook", verified.delivery_id),
            "source": source.name,
            "received_at": now,
            "reason": reason,
            "detail": f"webhook {verified.delivery_id}: {detail}",
            "payload": body.decode("utf-8", "replace")[:100_000],
            "location": f"{source.name}/webhook:{verified.delivery_id}",  # as a record's
        }
        table = pa.Table.from_pylist([row]).cast(
            pa.schema(
                [
                    pa.field(k, pa.timestamp("us", tz="UTC") if k == "received_at" else pa.string())
                    for k in row
                ]
            )
        )
        self.session.warehouse.load(QUARANTINE, table, on_conflict="ignore")


def delivery_of(source: str, location: str | None) -> str | None:
    """The delivery id a quarantine row of webhook source ``source`` came from, read off its
    location (``shop_hooks/webhook:<id>``, ``shop_hooks/webhook.line_items:<id>#2``; a delivery id
    may itself hold colons: ``orders/create:123``); ``None`` for a row of no delivery."""
    label, sep, rest = (location or "").partition(":")
    main = f"{source}/webhook"
    if not sep or not rest or not (label == main or label.startswith(main + ".")):
        return None
    if label != main:  # a nested element's row: <id>#<n>
        head, hash_, n = rest.rpartition("#")
        if hash_ and n.isdigit():
            rest = head
    return rest or None


def delivery_rows(
    wh: Warehouse, source: WebhookSource, delivery_id: str
) -> list[tuple[str, datetime]]:
    """``(id, received_at)`` of the quarantine rows of one delivery of ``source``."""
    rows = wh.fetch(
        f"SELECT id, received_at, location FROM {QUARANTINE.name} WHERE source = ? "
        "AND location LIKE ?",
        [source.name, f"%:{delivery_id}%"],
    )
    return [(i, at) for i, at, loc in rows if delivery_of(source.name, loc) == delivery_id]


def payload_summary(receipt: Receipt) -> dict[str, Any]:
    """The JSON answer for a receipt."""
    out: dict[str, Any] = {"status": receipt.outcome, "id": receipt.delivery_id}
    if receipt.outcome != "duplicate":
        out |= {"rows": receipt.rows, "quarantined": receipt.quarantined}
    if receipt.reason:
        out["reason"] = receipt.reason
    return out
