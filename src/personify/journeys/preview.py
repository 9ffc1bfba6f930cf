"""A preview: the email a journey's send step would make for one customer now, writing nothing.

``personify render TEMPLATE --customer X`` asks :func:`preview` for the send steps that use
TEMPLATE (as the step's template or an experiment variant's), finds X's entry into one of them
and resolves that step's variables for it as the send does
(:func:`personify.journeys.content.resolve`), with the message key, variant and purpose the send
uses, so that the email rendered at ``--now`` is the one the send makes at that instant:

* **the entry** — X's latest instance of the journey (latest trigger) that is still before the
  step (``active``) or that decided it (a ``messages`` row): its trigger key names the cart;
* **discount codes** are not issued: the code already issued for that message, else the
  placeholder :data:`personify.offers.PREVIEW_CODE` (:func:`personify.offers.preview_codes`);
* **an experiment** — the variant X was assigned (its template, variables and subject).

:func:`send_now` says whether that email, sent at ``--now``, would go out, or be suppressed,
held by quiet hours or over the frequency cap, and why — the send loop's gates (:mod:`.gates`)
asked of the previewed message.

Variables the caller gives (``--var``) are not resolved. When the step's other variables need
an entry (``cart``, ``recommendations``: the trigger's cart) and X has none,
:class:`NotInJourney` says so and names a few customers who have one. A step whose variables
need no entry (a tag's variables, new arrivals, the profile) renders for anyone, as if they
entered now.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from personify.config import Project
from personify.delivery import Envelope, Unsubscribe, prepare_one
from personify.errors import NotFound
from personify.journeys.content import Pending, resolve
from personify.journeys.decide import message_key
from personify.journeys.definitions import Journey, Step
from personify.journeys.gates import HELD, SEND, Gate, Message
from personify.journeys.gates import load as load_gates
from personify.journeys.send import _SubjectStore
from personify.messages import template_store
from personify.messages.locale import customer_locale
from personify.messages.templates import Template
from personify.warehouse.base import Warehouse

HOLDOUT = "holdout"
"""``messages.variant`` of an experiment's holdout (receives nothing)."""
ENTRY_PROVIDERS = frozenset({"cart", "recommendations"})
"""Providers whose values come from the entry's trigger key (the cart)."""
SUGGESTIONS = 3
"""Customers named when the one asked for has no entry."""


class NotInJourney(NotFound):
    """The customer has no entry into the journey(s) sending the template (no open cart), and
    the template needs one. ``customers``: a few who have one."""

    def __init__(self, message: str, *, hint: str, customers: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.customers = list(customers)


@dataclass(frozen=True)
class Preview:
    """How a journey would send a template to one customer now."""

    journey: str
    step: str
    template: str
    customer_id: str
    key: str
    """The message's idempotency key (the send's: tracked links and the code are keyed by it);
    ``preview:TEMPLATE`` without an entry."""
    trigger_key: str | None
    """The entry's trigger key (a cart id); ``None`` when the customer is not in the journey."""
    status: str | None
    """The entry's message status (``sent``, ``queued`` …), ``pending`` when not decided yet,
    ``None`` without an entry."""
    variables: dict[str, Any]
    """The step's variables as resolved for the customer (without the caller's)."""
    purpose: str
    """The journey's consent purpose (what the unsubscribe link revokes)."""
    variant: str | None = None
    subject: str | None = None
    """An experiment variant's subject line (``None``: the template's) — of every language
    version of the template but those :attr:`subjects` names."""
    notes: tuple[str, ...] = ()
    """What the reader of the preview should know (holdout, placeholder code, empty cart)."""
    placeholder: bool = False
    """A discount code is the placeholder, not a code issued to the customer."""
    holdout: str | None = None
    """The experiment whose holdout the customer is in (the journey sends them nothing)."""
    subjects: tuple[tuple[str, str], ...] = ()
    """The variant's subject line per language version (:attr:`Variant.subjects`)."""


def senders(journeys: Sequence[Journey], template: str) -> list[tuple[Journey, Step]]:
    """The send steps that send ``template`` (as written or in an experiment's variant)."""
    out = []
    for journey in journeys:
        for step in journey.steps:
            if step.kind != "send":
                continue
            variants = step.experiment.variants if step.experiment else ()
            if template in (step.template, *(v.template for v in variants)):
                out.append((journey, step))
    return out


def preview(
    wh: Warehouse,
    project: Project,
    journeys: Sequence[Journey],
    template: str,
    customer_id: str,
    *,
    now: datetime,
    given: Collection[str] = (),
) -> Preview | None:
    """``template`` as a journey would send it to ``customer_id`` at ``now`` (see the module
    docstring); ``None`` when no journey sends it. Writes nothing. Raises :class:`NotInJourney`
    when the step needs an entry (a cart) the customer does not have and ``given`` lacks the
    variables it would provide."""
    found = senders(journeys, template)
    if not found:
        return None
    best: tuple[Journey, Step, _Entry] | None = None
    for journey, step in found:
        entry = _entry(wh, journey, step, customer_id)
        if entry is not None and (best is None or entry.at > best[2].at):
            best = (journey, step, entry)
    if best is not None:
        return _resolve(wh, project, *best, template, customer_id, now, given)
    for journey, step in found:
        arm, _ = _arm(step, template, None)
        if not _needs_entry(arm, given):
            return _resolve(wh, project, journey, step, None, template, customer_id, now, given)
    journey, step = found[0]
    arm, _ = _arm(step, template, None)
    needed = sorted(v.name for v in arm.variables if _entry_variable(v.provider, v.name, given))
    others = qualifying(wh, journey, step)
    names = ", ".join(f"'{n}'" for n in needed)
    hint = "give the variables with --var NAME=VALUE or --vars FILE.json"
    hint += f", or preview a customer who has one: {', '.join(others)}" if others else ""
    raise NotInJourney(
        f"customer {customer_id} has no open cart in journey {journey.name} (they are not in "
        f"it): {template}.liquid has no {names} to show them",
        hint=hint,
        customers=others,
    )


def preview_template(project: Project, found: Preview, locale: str | None = None) -> Template:
    """The template the preview renders: the project's (its variant for the recipient's
    ``locale``), with an experiment variant's subject line."""
    store = template_store(project)
    lines = ({"": found.subject} if found.subject is not None else {}) | dict(found.subjects)
    if lines:
        store = _SubjectStore(store, lines)
    return store.get(found.template, locale)


def qualifying(wh: Warehouse, journey: Journey, step: Step, limit: int = SUGGESTIONS) -> list[str]:
    """A few customers with an entry into ``journey`` at ``step`` that is sent, queued or still
    to be decided (not skipped), latest trigger first."""
    index = journey.steps.index(step)
    rows = wh.fetch(
        f"SELECT i.customer_id, max(i.trigger_at) AS latest {_ENTRIES} "
        "AND (m.status IS NULL OR m.status IN ('queued', 'sent')) "
        "GROUP BY i.customer_id ORDER BY latest DESC, i.customer_id LIMIT ?",
        [step.id, journey.name, index, limit],
    )
    return [str(r[0]) for r in rows]


# ------------------------------------------------------------------------------------ entries
_ENTRIES = (
    "FROM journey_instances AS i LEFT JOIN messages AS m ON m.journey = i.journey "
    "AND m.step = ? AND m.customer_id = i.customer_id AND m.trigger_key = i.trigger_key "
    "WHERE i.journey = ? AND ((i.status = 'active' AND i.step <= ?) "
    "OR m.idempotency_key IS NOT NULL)"
)
"""Instances still before the step, or that decided it (parameters: step id, journey, index)."""


@dataclass(frozen=True)
class _Entry:
    trigger_key: str
    at: datetime
    status: str
    variant: str | None


def _entry(wh: Warehouse, journey: Journey, step: Step, customer_id: str) -> _Entry | None:
    index = journey.steps.index(step)
    rows = wh.fetch(
        f"SELECT i.trigger_key, i.trigger_at, m.status, m.variant {_ENTRIES} "
        "AND i.customer_id = ? ORDER BY i.trigger_at DESC, i.trigger_key DESC LIMIT 1",
        [step.id, journey.name, index, customer_id],
    )
    if not rows:
        return None
    key, at, status, variant = rows[0]
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return _Entry(str(key), at, str(status or "pending"), None if variant is None else str(variant))


def _entry_variable(provider: str | None, name: str, given: Collection[str]) -> bool:
    return provider in ENTRY_PROVIDERS and name not in given


def _needs_entry(step: Step, given: Collection[str]) -> bool:
    return any(_entry_variable(v.provider, v.name, given) for v in step.variables)


def _arm(step: Step, template: str, assigned: str | None) -> tuple[Step, str | None]:
    """The step as the variant sending ``template`` sends it, and that variant: the assigned
    one when it sends ``template``, else the step as written, else the first variant that does."""
    if step.experiment is None:
        return step, None
    if assigned is not None and assigned != HOLDOUT and step.arm(assigned).template == template:
        return step.arm(assigned), assigned
    if step.template == template:
        return step, None
    for variant in step.experiment.variants:
        if (variant.template or step.template) == template:
            return step.arm(variant.name), variant.name
    return step, None


def _resolve(
    wh: Warehouse,
    project: Project,
    journey: Journey,
    step: Step,
    entry: _Entry | None,
    template: str,
    customer_id: str,
    now: datetime,
    given: Collection[str],
) -> Preview:
    notes: list[str] = []
    assigned = entry.variant if entry is not None else None
    arm, variant = _arm(step, template, assigned)
    if assigned == HOLDOUT:
        notes.append(
            f"{customer_id} is in the holdout of this step's experiment: the journey sends them "
            "nothing (shown: the email as the other customers get it)"
        )
    elif assigned is not None and assigned != variant:
        notes.append(f"{customer_id} was assigned variant {assigned!r}, which sends another email")
    if entry is not None:
        trigger_key = entry.trigger_key
        key = message_key(journey.name, step.id, customer_id, trigger_key)
    else:  # no message: a preview's key (tracked links alike whoever is shown, no code)
        trigger_key = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        key = f"preview:{template}"
    resolved = resolve(
        wh,
        project,
        arm,
        [Pending(key, customer_id, trigger_key)],
        trigger=journey.trigger,
        now=now,
        preview=True,
        skip=given,
    )[key]
    placeholder = any(isinstance(v, dict) and v.get("preview") is True for v in resolved.values())
    if placeholder:
        notes.append("the discount code is a placeholder: none is issued for this message yet")
    for var in arm.variables:
        value = resolved.get(var.name)
        if var.provider == "cart" and isinstance(value, dict) and not value.get("items"):
            notes.append(f"cart {trigger_key} is empty at {now.isoformat()}")
    if entry is None:
        notes.append(
            f"{customer_id} is not in journey {journey.name}: shown as if they entered it now"
        )
    chosen = step.experiment.variant(variant) if step.experiment else None
    return Preview(
        journey=journey.name,
        step=step.id,
        template=template,
        customer_id=customer_id,
        key=key,
        trigger_key=entry.trigger_key if entry is not None else None,
        status=entry.status if entry is not None else None,
        variables=resolved,
        purpose=journey.purpose,
        variant=variant,
        subject=chosen.subject if chosen is not None and chosen.subject else None,
        subjects=chosen.subjects if chosen is not None else (),
        notes=tuple(notes),
        placeholder=placeholder,
        holdout=step.experiment.name if assigned == HOLDOUT and step.experiment else None,
    )


def send_now(
    wh: Warehouse,
    project: Project,
    journeys: Sequence[Journey],
    customer_id: str,
    found: Preview | None,
    *,
    now: datetime,
) -> Gate:
    """Whether the previewed email, sent at ``now``, would go out — the send loop's own gates
    (:mod:`.gates`: suppression, consent, goal, quiet hours, frequency cap) asked of its message;
    a customer in an experiment's holdout gets ``skipped_holdout``. ``found`` ``None`` (no
    journey sends the template): the gates of an email for the default purpose, uncapped."""
    if found is not None and found.holdout is not None:
        return Gate("skipped_holdout", f"holdout of experiment {found.holdout} (receives nothing)")
    if found is None:
        purpose = project.config.journeys.purpose
        message = Message(f"preview:{customer_id}", customer_id, None, purpose)
    else:
        message = Message(found.key, customer_id, found.journey, found.purpose)
    by_name = {j.name: j for j in journeys}
    # an email already sent is not over the cap because of itself
    exclude = [message.key]
    return load_gates(wh, project, by_name, [message], now, exclude=exclude).check(message)


@dataclass(frozen=True)
class Rendered:
    """What ``personify render`` shows (and ``personify send-test`` sends): the email, the
    journey step it came from and whether a send of it now would go out."""

    envelope: Envelope
    found: Preview | None
    """``None``: no journey sends the template (the caller's variables only)."""
    gate: Gate
    file: str = ""
    """The template file rendered: ``welcome.liquid`` or a locale variant, ``welcome.fr.liquid``
    (chosen by the customer's locale, :mod:`personify.messages.locale`)."""
    locale: str | None = None
    """The customer's locale, canonical (``fr-CA``), None without one."""


def render_preview(
    wh: Warehouse,
    project: Project,
    journeys: Sequence[Journey],
    template: str,
    customer: Mapping[str, Any],
    variables: Mapping[str, Any],
    *,
    now: datetime,
    unsubscribe: Unsubscribe | None = None,
) -> Rendered:
    """``template`` for ``customer`` (a ``customers`` row) as a journey would send it at
    ``now`` (:func:`preview`, then :func:`send_now`), rendered with ``variables`` winning over
    the journey's. Writes nothing. Its tracked links and pixel are signed for a key no message
    has (``preview:…``): a click on them records nothing as the customer's. ``unsubscribe``:
    other unsubscribe links than the customer's (a test send's, which revoke nothing)."""
    customer_id = str(customer["customer_id"])
    found = preview(wh, project, journeys, template, customer_id, now=now, given=set(variables))
    gate = send_now(wh, project, journeys, customer_id, found, now=now)
    locale = customer_locale(customer)
    if found is None:  # no journey sends it: the caller's variables only
        parsed = template_store(project).get(template, locale)
        envelope = prepare_one(
            project,
            parsed,
            customer,
            variables,
            key=f"preview:{template}",  # the same tracked links however the customer is named
            date=now,
            unsubscribe=unsubscribe,
        )
    else:  # as the journey's send makes it: its message key, variables and purpose
        parsed = preview_template(project, found, locale)
        envelope = prepare_one(
            project,
            parsed,
            customer,
            {**found.variables, **variables},
            # links and pixel signed for a key no message has: a marketer clicking a preview
            # records nothing as the customer's click or open (the rest is the sent email)
            key=f"preview:{found.key}",
            date=now,
            purpose=found.purpose,
            unsubscribe=unsubscribe,
        )
    return Rendered(envelope, found, gate, parsed.file, locale)


def verdict(gate: Gate) -> str:
    """What a send at ``now`` would do, in words."""
    if gate.outcome == SEND:
        return "a send now would go out"
    if gate.outcome == HELD:
        assert gate.until is not None
        return f"a send now would wait: {gate.reason} until {gate.until.isoformat()}"
    return f"a send now would not go out ({gate.outcome}): {gate.reason}"


def describe(found: Preview) -> str:
    """One line saying what the preview shows."""
    if found.trigger_key is None:
        return f"journey {found.journey}, step {found.step}: {found.customer_id} not in it"
    variant = f", variant {found.variant}" if found.variant else ""
    return (
        f"journey {found.journey}, step {found.step}{variant}: {found.customer_id}'s entry "
        f"{found.trigger_key} (message {found.status})"
    )
