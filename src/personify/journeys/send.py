"""Sending: every queued message due at ``--now``, in batches, each batch committed at once.

For each batch (``journeys.batch_size``, 500 by default, oldest decision first):

1. **Gates, again, just before sending** (:mod:`.gates`, which a preview asks too) — suppressed
   ⇒ ``skipped_suppressed`` (an erasure's tombstone gives way to consent for the message's
   purpose granted after it); consent but a pause the person asked for (the preference page)
   ⇒ ``skipped_paused``; no consent (the fail-closed gate) ⇒ ``skipped_consent``; the
   journey's goal reached since the trigger (the cart bought while the email waited) ⇒
   ``skipped_goal``; the customer left the journey's ``exit_when`` segment ⇒
   ``skipped_left_segment``; inside the customer's quiet hours ⇒ held (``send_after`` = when
   they end; still ``queued``); over the frequency cap (capped journeys' emails sent to the customer
   within the window, counting this batch's) ⇒ ``skipped_frequency`` — unless this batch's own
   message that took the slot was not sent after all (it could not render, its cart was empty
   …): then it is left queued for the next batch.
2. **Render fresh** — the step's variables are resolved once per provider for the batch
   (:mod:`personify.journeys.content`), every profile is read now in one query and rendered
   (:func:`personify.delivery.prepare_batch`); a message of an experiment's variant is rendered
   with the variant's template, variables and subject. A message whose cart (a ``{from: cart}``
   variable) is empty now — the shopper removed everything — is ``skipped_empty_cart``. A
   message that cannot render is ``failed`` with the reason (never sent blank) — but one whose
   connected content (without a fallback) is down for now (a timeout, a 5xx) waits as a refused
   one does (below); one whose customer has no usable address is ``skipped_no_address``.
3. **Hand over** — the transport is idempotent by key (the outbox writes one file per key). A
   message the server refuses for now (an SMTP 4xx for its recipient: greylisting, a full
   mailbox) stays ``queued`` with the reason in ``error`` and ``send_after`` pushed back (as long
   as it has waited since decided, 15 minutes to 4 hours) while the others go on; still refused
   :data:`GIVE_UP_AFTER` after it was decided, it is ``failed``.
4. **Commit** — every status of the batch in one staged ``UPDATE``.

A crash anywhere leaves the batch's messages ``queued``; the rerun renders them again and hands
them over again, and the transport drops the ones it already has: no message is sent twice and
none is lost. A transport that is unavailable (:class:`~personify.errors.Transient`) stops the
loop and leaves the rest queued for the next run; the messages of its batch it did accept (an
SMTP pool or an ESP has several in flight) are recorded ``sent`` at once.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from liquid import BoundTemplate

from personify.config import JourneySettings, Project
from personify.delivery import PrepareFailure, prepare_batch, transport_for
from personify.delivery.transport import DeliveryDeferred, DeliveryError, Transport, send_many
from personify.errors import NotFound, PersonifyError, ServiceUnavailable, Transient
from personify.journeys.content import Pending, resolve
from personify.journeys.definitions import Journey, Step
from personify.journeys.gates import HELD, SEND, Message, over_cap
from personify.journeys.gates import load as load_gates
from personify.messages import TemplateStore, template_store
from personify.messages.connected import ConnectedUnavailable
from personify.messages.labels import TEMPLATE_LOCALE, localize
from personify.messages.liquid_env import text_environment
from personify.messages.locale import candidates
from personify.messages.templates import Template
from personify.privacy.crypto import SUBJECT, KeyRing, project_ring, seal_field
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import Column, Table

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = timedelta(minutes=15), timedelta(hours=4)
"""How long a message refused for now waits before its next try (as long as it waited so far)."""
GIVE_UP_AFTER = timedelta(days=3)
"""A message still refused for now this long after it was decided is ``failed``."""
LOCK_LOST = (
    "the delivery lock was lost with its warehouse connection: stopped, the rest stay queued "
    "for the process that holds it"
)


@dataclass
class SendCounts:
    """What one delivery run did, by outcome."""

    sent: int = 0
    already_delivered: int = 0
    """Handed over before a crash, marked sent now (the transport had it)."""
    held: int = 0
    """Held by quiet hours."""
    deferred: int = 0
    """Refused for now by the server (a 4xx for the message): still queued, retried later."""
    statuses: dict[str, int] = field(default_factory=dict)
    """Final statuses written: sent, skipped_*, failed."""
    by_journey: dict[str, int] = field(default_factory=dict)
    """Sent per journey."""
    first_location: str | None = None
    """Where the first email sent by this run went (an .eml path for the outbox)."""
    stopped: str | None = None
    """Why the loop stopped early (transport unavailable, lock lost), else ``None``."""
    lock_lost: bool = False
    """The delivery lock was lost mid-run (its warehouse connection dropped): stopped."""

    def as_dict(self) -> dict[str, int]:
        out = {"sent": self.sent, "held_quiet_hours": self.held}
        if self.deferred:
            out["deferred"] = self.deferred
        if self.lock_lost:
            out["lock_lost"] = 1
        out.update({k: v for k, v in self.statuses.items() if k != "sent"})
        return out


@dataclass(frozen=True)
class _Row:
    key: str
    customer_id: str
    journey: str
    step: str
    template: str
    trigger_key: str
    purpose: str
    variant: str = ""
    decided_at: datetime | None = None


_LINE_LOCALE = "personify:line_locale"
"""A subject line's template global: the locale its key names (not a Liquid name: a colon)."""


class _LineIn(BoundTemplate):
    """A variant's subject line keyed by a locale (``fr``): its words — dates, amounts, the
    discount's label and expiry — are written in that language (the customer's way when theirs, as
    :func:`~personify.messages.labels.localize` does), whatever the body's file is: a French line
    over ``hi.liquid`` wrote English dates beside its French words."""

    def make_globals(self, render_args: Mapping[str, object]) -> Mapping[str, object]:
        language = self.globals.get(_LINE_LOCALE)
        if isinstance(language, str) and language:
            words = {k: v for k, v in render_args.items() if k != TEMPLATE_LOCALE}
            zone = getattr(self.env, "default_timezone", None)
            render_args = localize(words, language, zone if isinstance(zone, str) else None)
        return super().make_globals(render_args)


class _SubjectStore(TemplateStore):
    """A template store whose templates take an experiment variant's subject lines: per locale
    (``fr``, ``fr-CA``; ``""`` for the others), chosen as template files are — the recipient's
    exact locale, else their language, else ``""`` — whether or not the template has a file for
    that locale; with none of them, the version keeps its own (:meth:`Variant.subject_lines`)."""

    def __init__(self, inner: TemplateStore, subjects: str | Mapping[str, str]) -> None:
        self.folder = inner.folder  # no super(): a view
        self._inner = inner
        env = text_environment()
        env.default_locale = inner.default_locale  # type: ignore[attr-defined]
        env.default_timezone = inner.default_timezone  # type: ignore[attr-defined]
        env.template_class = _LineIn  # (a line keyed by a locale writes in its language)
        lines = {"": subjects} if isinstance(subjects, str) else dict(subjects)
        self._subjects = {
            version: env.from_string(
                line,
                name=f"variant subject {version}".strip(),
                globals={_LINE_LOCALE: version} if version else None,
            )
            for version, line in lines.items()
        }

    def names(self) -> list[str]:
        return self._inner.names()

    def variant_for(self, name: str, locale: str | None) -> str:
        """The most specific of ``locale``'s candidates (``fr-CA``, ``fr``) that has a file or a
        subject line of its own: what :meth:`get` is asked for, so a batch groups recipients by
        the body *and* the subject they get (``fr-CA`` readers of ``NAME.liquid`` given their
        own subject line are a group of their own)."""
        for suffix in candidates(locale):
            if suffix in self._subjects or suffix == self._inner.variant_for(name, suffix):
                return suffix
        return ""

    def get(self, name: str, locale: str | None = None) -> Template:
        """The template's version for ``locale`` (its file: exact locale, else language, else
        ``NAME.liquid``) with the subject line for ``locale`` by the same fallback: the exact
        locale's, else its language's, else ``default``, else the version's own."""
        found = self._inner.get(name, locale)
        subject = next(
            (self._subjects[s] for s in candidates(locale) if s in self._subjects),
            self._subjects.get(""),
        )
        if subject is None:  # this language version keeps its own
            return found
        # the variant's subject rendered by python-liquid (the template's compiled one is not it)
        return dataclasses.replace(found, subject=subject, subject_compiled=None)


@dataclass
class _Outcome:
    status: str
    error: str | None = None
    subject: str | None = None
    send_after: datetime | None = None


def deliver(
    wh: Warehouse,
    project: Project,
    journeys: Sequence[Journey],
    *,
    now: datetime,
    transport: Transport | None = None,
    limit: int | None = None,
    held: Callable[[], bool] | None = None,
    waiting: frozenset[str] = frozenset(),
) -> SendCounts:
    """Send every queued message due at ``now`` (see the module docstring).

    ``waiting``: journeys whose messages stay queued, untouched (a template they send is
    broken: :func:`personify.journeys.stage.runnable_journeys`) — sent once it is fixed.

    ``held``: whether this process still holds the delivery lock
    (:meth:`personify.journeys.stage.Lock.held`), asked before each batch and when a warehouse
    statement fails: a lock lost with its connection (PostgreSQL's advisory locks live as long as
    the session that took them) stops the loop cleanly — the batch's outcomes recorded (on a new
    connection), the rest left queued for the process that holds the lock now, and
    :attr:`SendCounts.stopped` saying so."""
    settings = project.config.journeys
    by_name = {j.name: j for j in journeys}
    own = transport is None
    transport = transport or transport_for(project)
    store = template_store(project)
    ring = project_ring(project)  # subject lines are stored encrypted under it
    counts = SendCounts()
    done = 0

    def lost() -> bool:
        if held is None or held():
            return False
        counts.stopped, counts.lock_lost = LOCK_LOST, True
        log.warning("delivery: %s", LOCK_LOST)
        return True

    try:
        while limit is None or done < limit:
            if lost():
                break
            size = settings.batch_size if limit is None else min(settings.batch_size, limit - done)
            try:
                batch = _due(wh, now, size, waiting)
                if not batch:
                    break
                outcomes, stop = _send_batch(
                    wh, project, settings, by_name, batch, now, transport, store, counts
                )
            except ServiceUnavailable:
                if lost():  # the connection dropped, and the lock with it
                    break
                raise
            try:
                _commit(wh, outcomes, now, transport.name, ring)
            except ServiceUnavailable:
                if held is None:
                    raise
                # the connection may have dropped while the batch was being sent: record what
                # was handed over once more, on a new one (the loop then stops if the lock went)
                _commit(wh, outcomes, now, transport.name, ring)
            for outcome in outcomes.values():
                if outcome.status != "queued":
                    counts.statuses[outcome.status] = counts.statuses.get(outcome.status, 0) + 1
            done += len(batch)
            if stop:
                counts.stopped = stop
                break
    finally:
        if own:
            transport.close()
    return counts


def _due(
    wh: Warehouse, now: datetime, size: int, waiting: frozenset[str] = frozenset()
) -> list[_Row]:
    names = sorted(waiting)
    held_back = (
        f"AND coalesce(journey, '') NOT IN ({', '.join('?' for _ in names)}) " if names else ""
    )
    rows = wh.fetch(
        "SELECT idempotency_key, customer_id, journey, step, template, trigger_key, purpose, "
        "variant, decided_at FROM messages "
        f"WHERE status = 'queued' AND (send_after IS NULL OR send_after <= ?) {held_back}"
        "ORDER BY decided_at, idempotency_key LIMIT ?",
        [now, *names, size],
    )
    out = []
    for *texts, decided_at in rows:
        key, customer_id, journey, step, template, trigger_key, purpose, variant = (
            str(v) if v is not None else "" for v in texts
        )
        at = decided_at if isinstance(decided_at, datetime) else None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        out.append(
            _Row(key, customer_id, journey, step, template, trigger_key, purpose, variant, at)
        )
    return out


def _send_batch(
    wh: Warehouse,
    project: Project,
    settings: JourneySettings,
    journeys: Mapping[str, Journey],
    batch: list[_Row],
    now: datetime,
    transport: Transport,
    store: TemplateStore,
    counts: SendCounts,
) -> tuple[dict[str, _Outcome], str | None]:
    outcomes: dict[str, _Outcome] = {}
    messages = {
        r.key: Message(r.key, r.customer_id, r.journey, r.purpose or settings.purpose)
        for r in batch
    }
    gates = load_gates(wh, project, journeys, list(messages.values()), now)
    capped = gates.capped  # counts this batch's capped messages as they are let through
    sent_before = dict(capped)
    reserved: dict[str, list[str]] = {}  # customer → this batch's capped messages to send
    waiting: list[_Row] = []  # over the cap by this batch's own messages only
    live: list[_Row] = []
    for row in batch:
        journey = journeys.get(row.journey)
        step = journey.step(row.step) if journey else None
        if journey is None or step is None or step.kind != "send":
            outcomes[row.key] = _Outcome(
                "failed", f"journey {row.journey!r} has no send step {row.step!r} any more"
            )
            continue
        gate = gates.check(messages[row.key])
        if gate.outcome == HELD:
            outcomes[row.key] = _Outcome("queued", send_after=gate.until)
            counts.held += 1
        elif gate.outcome == "skipped_frequency":
            assert settings.frequency_cap is not None
            if sent_before.get(row.customer_id, 0) < settings.frequency_cap.max:
                waiting.append(row)
            else:
                outcomes[row.key] = _Outcome(gate.outcome, gate.reason)
        elif gate.outcome != SEND:
            outcomes[row.key] = _Outcome(gate.outcome, gate.reason)
        else:
            if journey.capped:
                capped[row.customer_id] = capped.get(row.customer_id, 0) + 1
                reserved.setdefault(row.customer_id, []).append(row.key)
            live.append(row)
    stop = _render_and_send(wh, project, journeys, live, now, transport, store, outcomes, counts)
    cap = settings.frequency_cap
    for row in waiting:  # the cap counts what this batch sent (or will: queued), not failures
        assert cap is not None
        mine = reserved.get(row.customer_id, [])
        taken = sum(1 for k in mine if k not in outcomes or outcomes[k].status in _TAKES_A_SLOT)
        if sent_before.get(row.customer_id, 0) + taken >= cap.max:
            outcomes[row.key] = _over_cap(settings)
        # else: no outcome, still queued — the next batch sends it (the cap counting that one)
    return outcomes, stop


_TAKES_A_SLOT = ("sent", "queued")
"""Outcomes of a batch's capped message that count against the cap (queued: retried later)."""


def _over_cap(settings: JourneySettings) -> _Outcome:
    return _Outcome("skipped_frequency", over_cap(settings))


def _render_and_send(
    wh: Warehouse,
    project: Project,
    journeys: Mapping[str, Journey],
    live: list[_Row],
    now: datetime,
    transport: Transport,
    store: TemplateStore,
    outcomes: dict[str, _Outcome],
    counts: SendCounts,
) -> str | None:
    groups: dict[tuple[str, str, str], list[_Row]] = {}
    for row in live:
        groups.setdefault((row.journey, row.step, row.variant), []).append(row)
    for (name, step_id, variant_name), rows in groups.items():
        defined = journeys[name].step(step_id)
        assert defined is not None
        step = defined.arm(variant_name)  # an experiment's variant: its template and variables
        assert step.template is not None
        chosen = defined.experiment.variant(variant_name) if defined.experiment else None
        step_store = (
            _SubjectStore(store, chosen.subject_lines())
            if chosen is not None and chosen.subject_lines()
            else store
        )
        try:
            variables = _variables(wh, project, journeys[name], step, rows, now)
        except PersonifyError as e:
            if isinstance(e, Transient):
                return str(e).splitlines()[0]
            for r in rows:
                outcomes[r.key] = _Outcome("failed", f"variables: {str(e).splitlines()[0]}")
            continue
        empty = [r for r in rows if r.key not in variables]
        for r in empty:
            outcomes[r.key] = _Outcome("skipped_empty_cart", "the cart is empty at send time")
        rows = [r for r in rows if r.key in variables]
        if not rows:
            continue
        items = [(r.key, r.customer_id, variables[r.key]) for r in rows]
        purpose = rows[0].purpose or project.config.journeys.purpose  # one step, one purpose
        try:
            prepared = prepare_batch(
                wh, project, step.template, items, store=step_store, date=now, purpose=purpose
            )
        except NotFound as e:  # the template was removed since the journeys stage checked it
            for r in rows:
                outcomes[r.key] = _Outcome("failed", str(e).splitlines()[0])
            continue
        envelopes = []
        for r, result in zip(rows, prepared, strict=True):
            if isinstance(result, PrepareFailure) and isinstance(
                result.error, ConnectedUnavailable
            ):  # its connected content is down for now: the email waits, as a deferral
                outcomes[r.key] = _deferred(r, result.error, now)
                counts.deferred += outcomes[r.key].status == "queued"
            elif isinstance(result, PrepareFailure):
                status = {"address": "skipped_no_address", "not_found": "skipped_not_found"}.get(
                    result.kind, "failed"
                )
                outcomes[r.key] = _Outcome(status, result.reason)
            else:
                envelopes.append(result)
        by_key = {r.key: r for r in rows}
        stop: str | None = None
        for envelope, delivered in zip(envelopes, send_many(transport, envelopes), strict=True):
            if isinstance(delivered, DeliveryDeferred):  # this one, not the transport
                outcomes[envelope.key] = _deferred(by_key[envelope.key], delivered, now)
                counts.deferred += outcomes[envelope.key].status == "queued"
                continue
            if isinstance(delivered, DeliveryError):
                if isinstance(delivered, Transient):  # stays queued; the others are recorded
                    stop = stop or str(delivered).splitlines()[0]
                else:
                    outcomes[envelope.key] = _Outcome("failed", str(delivered).splitlines()[0])
                continue
            outcomes[envelope.key] = _Outcome("sent", subject=envelope.subject)
            counts.sent += 1
            if not delivered.new:
                counts.already_delivered += 1
            journey = by_key[envelope.key].journey
            counts.by_journey[journey] = counts.by_journey.get(journey, 0) + 1
            if counts.first_location is None:
                counts.first_location = delivered.location
        if stop is not None:
            return stop
    return None


def _variables(
    wh: Warehouse, project: Project, journey: Journey, step: Step, rows: list[_Row], now: datetime
) -> dict[str, dict[str, Any]]:
    """The variables of each message of ``rows`` by key — without the messages whose cart (a
    ``{from: cart}`` variable) is empty now: nothing to remind of, so nothing else (a discount
    code) is resolved for them."""
    pending = [Pending(r.key, r.customer_id, r.trigger_key) for r in rows]
    trigger = journey.trigger
    carts = {v.name for v in step.variables if v.provider == "cart"}
    if not carts:
        return resolve(wh, project, step, pending, trigger=trigger, now=now)
    others = {v.name for v in step.variables} - carts
    found = resolve(wh, project, step, pending, trigger=trigger, now=now, skip=others)
    full = [m for m in pending if all(found[m.key][name]["items"] for name in carts)]
    rest = resolve(wh, project, step, full, trigger=trigger, now=now, skip=carts) if full else {}
    return {m.key: {**found[m.key], **rest[m.key]} for m in full}


def _deferred(row: _Row, error: Exception, now: datetime) -> _Outcome:
    """A message the server refused for now (or whose connected content is down): queued
    again, later — or failed, given up."""
    reason = str(error).splitlines()[0]
    waited = now - row.decided_at if row.decided_at is not None else timedelta(0)
    if waited >= GIVE_UP_AFTER:
        return _Outcome("failed", f"{reason}; still refused {waited} after it was decided")
    pause = min(max(waited, RETRY_MIN), RETRY_MAX)
    return _Outcome("queued", f"{reason}; retried later", send_after=now + pause)


_STAGE_COLUMNS = (
    Column("idempotency_key", "VARCHAR"),
    Column("status", "VARCHAR"),
    Column("error", "VARCHAR"),
    Column("subject", "VARCHAR"),
    Column("send_after", "TIMESTAMPTZ"),
)


def _commit(
    wh: Warehouse,
    outcomes: Mapping[str, _Outcome],
    now: datetime,
    transport: str,
    ring: KeyRing | None,
) -> None:
    """Every outcome of a batch in one transaction: staged through Arrow, one ``UPDATE``. A
    subject line is stored encrypted under ``ring`` (:data:`~personify.privacy.crypto.SUBJECT`):
    rendered for one person, it often carries their name."""
    if not outcomes:
        return
    keys = list(outcomes)
    stage = f"_personify_sent_{uuid.uuid4().hex[:12]}"
    table = Table(stage, _STAGE_COLUMNS)
    cols = ", ".join(f"{quote(c.name)} {wh.column_type(c.type)}" for c in table.columns)
    data = pa.table(
        {
            "idempotency_key": keys,
            "status": [outcomes[k].status for k in keys],
            "error": pa.array([outcomes[k].error for k in keys], pa.string()),
            "subject": pa.array(
                [seal_field(ring, SUBJECT, outcomes[k].subject) for k in keys], pa.string()
            ),
            "send_after": pa.array(
                [outcomes[k].send_after for k in keys], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    with wh.transaction():
        wh.execute(f"CREATE TEMP TABLE {quote(stage)} ({cols})")
        wh.load(table, data)
        wh.execute(
            "UPDATE messages SET status = s.status, error = s.error, "
            "subject = coalesce(s.subject, messages.subject), send_after = s.send_after, "
            "sent_at = CASE WHEN s.status = 'sent' THEN CAST(? AS TIMESTAMPTZ) END, "
            "transport = CASE WHEN s.status = 'sent' THEN ? END "
            f"FROM {quote(stage)} AS s WHERE messages.idempotency_key = s.idempotency_key "
            "AND messages.status = 'queued'",
            [now, transport],
        )
        wh.execute(f"DROP TABLE {quote(stage)}")
