"""Delivery: MIME, signed unsubscribe tokens and transports (outbox, SMTP, ESP API).

* :func:`prepare` / :func:`~personify.delivery.batch.prepare_batch` — read the profile(s) now,
  render, build MIME (one customer / a journey's batch, per-item failures returned);
* :func:`compose` — a rendered email for one customer → :class:`Envelope` (MIME built, the
  unsubscribe link signed with the project's ``signing_key``);
* :func:`transport_for` — the project's configured :class:`Transport` (:class:`OutboxTransport`,
  :class:`SmtpTransport`, :class:`EspTransport`), idempotent by key; :func:`send_many` hands a
  batch over (concurrently where the transport can), one :class:`Delivered` or
  :class:`DeliveryError` (:class:`DeliveryRejected` / :class:`DeliveryUnavailable` /
  :class:`DeliveryDeferred`) per message;
* :mod:`personify.delivery.tokens` — :func:`sign` / :func:`verify` unsubscribe tokens;
* :mod:`personify.delivery.suppress` — unsubscribes and ESP bounce/complaint events →
  ``suppressions`` (:mod:`personify.delivery.events` parses and verifies the webhooks).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from personify import clock
from personify.config import EspDelivery, Project, SmtpDelivery
from personify.delivery.batch import PrepareFailure, prepare_batch
from personify.delivery.esp import EspTransport
from personify.delivery.mime import (
    AddressError,
    Mailbox,
    Unsubscribe,
    address,
    build_message,
    build_raw,
    mailbox,
    message_id,
    sender_mailbox,
)
from personify.delivery.outbox import OutboxTransport
from personify.delivery.ratelimit import RateLimitedTransport, bucket_for
from personify.delivery.smtp import SmtpTransport
from personify.delivery.tokens import (
    DEFAULT_PURPOSE,
    UnsubscribeClaim,
    project_key,
    sign,
    sign_test,
    verify,
)
from personify.delivery.transport import (
    BatchTransport,
    Delivered,
    DeliveryDeferred,
    DeliveryError,
    DeliveryRejected,
    DeliveryUnavailable,
    Envelope,
    Transport,
    send_many,
)
from personify.engagement.links import message_links, tracking_on
from personify.messages import (
    RenderedEmail,
    Template,
    TemplateStore,
    build_context,
    read_customer,
    render,
    template_store,
)
from personify.messages.connected import AddressPolicy
from personify.messages.connected import resolve as resolve_connected
from personify.messages.locale import customer_locale
from personify.messages.render import localized
from personify.warehouse.base import Warehouse


def unsubscribe_for(
    project: Project,
    customer_id: str,
    purpose: str = DEFAULT_PURPOSE,
    message_key: str | None = None,
) -> Unsubscribe:
    """The signed unsubscribe links of ``customer_id`` for ``purpose`` (the consent an
    unsubscribe revokes), naming the message ``message_key`` they are sent in (so the
    unsubscribe is counted against its journey, step and variant). Raises ConfigError without
    a key."""
    token = sign(project_key(project), customer_id, purpose, message_key)
    settings = project.config.email
    return Unsubscribe(
        settings.unsubscribe_url + token,
        settings.unsubscribe_mailto,
        preferences_base(project) + token,
    )


def preferences_base(project: Project) -> str:
    """Where preference page links point, the token to be appended: ``email.preferences_url``,
    by default the scheme and host of ``email.unsubscribe_url`` with ``/preferences/``."""
    return project.config.email.preferences_base


def test_unsubscribe(project: Project, purpose: str = DEFAULT_PURPOSE) -> Unsubscribe:
    """The unsubscribe links of a test send (:func:`~personify.delivery.tokens.sign_test`):
    shaped like a customer's, unsubscribing nobody. Raises ConfigError without a key."""
    settings = project.config.email
    token = sign_test(project_key(project), purpose)
    return Unsubscribe(
        settings.unsubscribe_url + token,
        settings.unsubscribe_mailto,
        preferences_base(project) + token,
    )


def compose(
    project: Project,
    customer: Mapping[str, Any],
    email: RenderedEmail,
    *,
    key: str,
    date: datetime | None = None,
    unsubscribe: Unsubscribe | None = None,
) -> Envelope:
    """The envelope of ``email`` to ``customer`` (a ``customers`` row). Raises AddressError
    when the customer has no usable email address."""
    settings = project.config.email
    customer_id = str(customer["customer_id"])
    name = " ".join(str(customer.get(k) or "") for k in ("first_name", "last_name")).strip()
    sender = sender_mailbox(settings.from_address, settings.from_name)
    recipient = mailbox(str(customer.get("email") or ""), name)
    raw = build_raw(
        email,
        sender=sender,
        recipient=recipient,
        date=date or clock.now(),
        key=key,
        unsubscribe=unsubscribe or unsubscribe_for(project, customer_id, message_key=key),
        reply_to=sender_mailbox(settings.reply_to) if settings.reply_to else None,
    )
    return Envelope(
        key, customer_id, email.template, email.subject, raw, sender.addr_spec, recipient.addr_spec
    )


def prepare(
    wh: Warehouse,
    project: Project,
    template: str,
    who: str,
    variables: Mapping[str, Any] | None = None,
    *,
    key: str,
    store: TemplateStore | None = None,
) -> Envelope:
    """Everything between a decision and a transport: read the customer now, sign their
    unsubscribe link (``unsubscribe_url`` and ``preferences_url`` in the context), render,
    build the MIME message.

    Raises :class:`~personify.messages.RenderError` (record the message as failed with
    ``err.reason``), :class:`AddressError` (no usable address) or NotFound."""
    customer = read_customer(wh, who, project)
    parsed = (store or template_store(project)).get(template, customer_locale(customer))
    return prepare_one(project, parsed, customer, variables, key=key)


def prepare_one(
    project: Project,
    template: Template,
    customer: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    *,
    key: str,
    date: datetime | None = None,
    purpose: str | None = None,
    unsubscribe: Unsubscribe | None = None,
) -> Envelope:
    """:func:`prepare` for a parsed template and a ``customers`` row already read; the
    unsubscribe link revokes ``purpose`` (default: the journeys' purpose) — or is
    ``unsubscribe`` when given (a test send's, which revokes nothing)."""
    unsubscribe = unsubscribe or unsubscribe_for(
        project,
        str(customer["customer_id"]),
        purpose or project.config.journeys.purpose,
        message_key=key,
    )
    urls = {"unsubscribe_url": unsubscribe.url, "preferences_url": unsubscribe.preferences or ""}
    context = build_context(customer, {**urls, **(variables or {})})
    if template.connected:  # fetched now; a variable the caller gives wins
        context = dict(localized(template, context))  # its URLs: in the email's language
        wanted = [c for c in template.connected if c.name not in context]
        policy = AddressPolicy.from_config(project.config.email.connected_allow)
        name = template.file
        context.update(resolve_connected(wanted, context, name, policy=policy))
    links = None
    if tracking_on(project, template.tracking):  # links to /c/…, the pixel /o/…
        who, signing_key = str(customer["customer_id"]), project_key(project)
        links = message_links(project, key=key, customer_id=who, signing_key=signing_key)
    email = render(template, context, links)
    return compose(project, customer, email, key=key, date=date, unsubscribe=unsubscribe)


def transport_for(project: Project) -> Transport:
    """The transport ``delivery:`` configures: :class:`OutboxTransport`, :class:`SmtpTransport`
    or :class:`EspTransport`. The SMTP and ESP transports also have ``send_many`` (a batch,
    concurrently); :func:`send_many` uses it when there. Close the transport when done."""
    delivery = project.config.delivery
    if isinstance(delivery, SmtpDelivery):
        return SmtpTransport.from_project(project, delivery)
    if isinstance(delivery, EspDelivery):
        return EspTransport.from_project(project, delivery)
    outbox = OutboxTransport(project.path(delivery.path))
    bucket = bucket_for(delivery)
    return outbox if bucket is None else RateLimitedTransport(outbox, bucket)


__all__ = [
    "AddressError",
    "BatchTransport",
    "Delivered",
    "DeliveryDeferred",
    "DeliveryError",
    "DeliveryRejected",
    "DeliveryUnavailable",
    "Envelope",
    "EspTransport",
    "Mailbox",
    "OutboxTransport",
    "PrepareFailure",
    "SmtpTransport",
    "Transport",
    "Unsubscribe",
    "UnsubscribeClaim",
    "address",
    "build_message",
    "build_raw",
    "compose",
    "mailbox",
    "message_id",
    "prepare",
    "prepare_batch",
    "prepare_one",
    "project_key",
    "send_many",
    "sign",
    "test_unsubscribe",
    "transport_for",
    "unsubscribe_for",
    "verify",
]
