"""Test sends: one customer's email, as ``personify render`` shows it, sent to staff inboxes.

``personify send-test TEMPLATE --customer X --to qa@shop.example`` (and ``POST /v1/test-sends``)
renders what :func:`~personify.journeys.preview.render_preview` renders for X at ``--now`` — the
journey's variables, variant, the code already issued or the placeholder ``PREVIEW-CODE`` — and
hands it to the project's transport (outbox, SMTP or ESP), so the real pipeline (DKIM, the ESP)
is exercised. The copy differs from the customer's email in what keeps it apart from them:

* **recipients** — only addresses :func:`allowed` by ``email.test_recipients`` (addresses or
  ``*@domain``); any other is refused before anything is rendered (:class:`RecipientRefused`),
  so a typo cannot mail a customer; the ``To`` header is the test recipient's, alone;
* **marks** — the subject starts with ``[TEST] `` and the message carries ``X-Personify-Test: 1``;
  its ``Message-ID`` is fresh (its key ``test:TEMPLATE:RUN:N``), so every test send arrives;
* **nothing recorded** — no ``messages`` row (no cap, report or idempotency key touched), no
  discount code issued; tracked links and the pixel are signed for a preview key no message has
  (a click records nothing); the unsubscribe links are a test token that unsubscribes nobody
  (:func:`personify.delivery.tokens.sign_test`); an ESP is not told the customer id (a bounce of
  the test address suppresses that address, not the customer);
* **audited** — it discloses one customer's personal data to staff: an ``audit_log`` entry
  (``test_send``: actor, template, journey, hashed customer, hashed recipients) is appended
  *before* the hand-over, so no test send leaves without its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from personify.config import Project
from personify.delivery import (
    AddressError,
    Delivered,
    DeliveryError,
    Envelope,
    Mailbox,
    send_many,
    test_unsubscribe,
    transport_for,
)
from personify.delivery.mime import mailbox, readdressed
from personify.errors import UsageError
from personify.journeys.definitions import Journey
from personify.journeys.gates import Gate
from personify.journeys.preview import Preview, render_preview
from personify.privacy.audit import log_action
from personify.privacy.hashing import optional_key
from personify.warehouse.base import Warehouse

SUBJECT_PREFIX = "[TEST] "
TEST_HEADER = "X-Personify-Test"
CONFIG_KEY = "email.test_recipients"


class RecipientRefused(UsageError):
    """A test recipient ``email.test_recipients`` does not list (or none listed, none given,
    or not an address). ``refused``: the addresses refused."""

    def __init__(self, message: str, *, refused: Sequence[str] = (), hint: str | None = None):
        super().__init__(message, option="--to", hint=hint)
        self.refused = list(refused)


def allowed(patterns: Sequence[str], address: str) -> bool:
    """Whether ``address`` is one of ``patterns`` (an address, or ``*@domain``: any address of
    that domain — not its subdomains), compared without case."""
    addr = address.strip().lower()
    domain = addr.rpartition("@")[2]
    for pattern in patterns:
        p = pattern.strip().lower()
        if addr == p or (p.startswith("*@") and domain == p[2:]):
            return True
    return False


def check_recipients(project: Project, recipients: Sequence[str]) -> list[str]:
    """``recipients`` checked (each a usable address listed by ``email.test_recipients``),
    without repeats. Raises :class:`RecipientRefused` naming the key otherwise."""
    patterns = project.config.email.test_recipients
    hint = f"list who may receive test emails under {CONFIG_KEY} in personify.yml"
    if not recipients:
        raise RecipientRefused("give at least one test recipient", hint=hint)
    if not patterns:
        raise RecipientRefused(
            f"test sends are off: {CONFIG_KEY} lists nobody",
            refused=recipients,
            hint=f"{hint} (addresses or *@domain)",
        )
    out: list[str] = []
    refused: list[str] = []
    for raw in recipients:
        try:
            address = mailbox(raw).addr_spec
        except AddressError:
            raise RecipientRefused(f"{raw!r} is not an email address", refused=[raw]) from None
        if not allowed(patterns, address):
            refused.append(address)
        elif address.lower() not in {a.lower() for a in out}:
            out.append(address)
    if refused:
        listed = ", ".join(refused)
        raise RecipientRefused(
            f"not listed in {CONFIG_KEY}: {listed} — a test email goes only to the addresses "
            f"(or *@domain patterns) {CONFIG_KEY} lists",
            refused=refused,
            hint=f"{hint}, or check the address for a typo",
        )
    return out


def recipient_hash(key: bytes | None, address: str) -> str:
    """Keyed hash (hex, 32 chars) of a test recipient's address, as the audit log keeps it."""
    data = f"email\0{address.strip().lower()}".encode()
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(data).hexdigest()[:32]


def proof_copy(envelope: Envelope, recipient: str, key: str) -> Envelope:
    """``envelope`` made a test email to ``recipient``: ``To`` that address alone, the subject
    ``[TEST] …``, ``X-Personify-Test: 1``, a ``Message-ID`` of ``key``. Its customer id is
    kept (the outbox's index names whose data it holds: an erasure deletes it)."""
    subject = SUBJECT_PREFIX + envelope.subject
    raw = readdressed(
        envelope.raw,
        recipient=Mailbox(recipient),
        subject=subject,
        key=key,
        domain=envelope.sender.rpartition("@")[2] or "personify.invalid",
        extra=[(TEST_HEADER, "1")],
    )
    return Envelope(
        key,
        envelope.customer_id,
        envelope.template,
        subject,
        raw,
        envelope.sender,
        recipient,
    )


@dataclass(frozen=True)
class TestSend:
    """What a test send did."""

    __test__ = False  # not a pytest class

    template: str
    customer_id: str
    subject: str
    """The subject sent (``[TEST] …``)."""
    found: Preview | None
    """The journey step the email came from (``None``: no journey sends the template)."""
    gate: Gate
    """Whether the customer's own email, sent now, would go out (the send's checks)."""
    transport: str
    outcomes: list[tuple[str, Delivered | DeliveryError]]
    """Per recipient: where it went, or why not."""

    @property
    def failed(self) -> int:
        return sum(isinstance(o, DeliveryError) for _, o in self.outcomes)


def send_test(
    wh: Warehouse,
    project: Project,
    journeys: Sequence[Journey],
    template: str,
    customer: Mapping[str, Any],
    recipients: Sequence[str],
    variables: Mapping[str, Any] | None = None,
    *,
    now: datetime,
    actor: str,
) -> TestSend:
    """Render ``template`` for ``customer`` (a ``customers`` row) as ``personify render`` does at
    ``now`` and hand one test copy per recipient to the project's transport (see the module
    docstring). Raises :class:`RecipientRefused` before anything else when a recipient is not
    allowed; render errors as ``render`` raises them."""
    to = check_recipients(project, recipients)
    purpose = project.config.journeys.purpose
    rendered = render_preview(
        wh,
        project,
        journeys,
        template,
        customer,
        dict(variables or {}),
        now=now,
        unsubscribe=test_unsubscribe(project, purpose),
    )
    run = uuid.uuid4().hex[:16]
    envelopes = [
        proof_copy(rendered.envelope, r, f"test:{template}:{run}:{n}") for n, r in enumerate(to)
    ]
    transport = transport_for(project)
    try:
        key = optional_key(project)
        found = rendered.found
        log_action(  # before the hand-over: no test send leaves without its entry
            wh,
            action="test_send",
            actor=actor,
            customer_id=str(customer["customer_id"]),
            key=key,
            detail={
                "template": template,
                "journey": found.journey if found is not None else None,
                "step": found.step if found is not None else None,
                "variant": found.variant if found is not None else None,
                "recipients": [recipient_hash(key, r) for r in to],
                "transport": transport.name,
                "run": run,
            },
        )
        outcomes = send_many(transport, envelopes)
    finally:
        transport.close()
    return TestSend(
        template=template,
        customer_id=str(customer["customer_id"]),
        subject=envelopes[0].subject,
        found=rendered.found,
        gate=rendered.gate,
        transport=transport.name,
        outcomes=list(zip(to, outcomes, strict=True)),
    )
