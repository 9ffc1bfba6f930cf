"""What every transport (outbox, SMTP, ESP API) implements, and how delivery fails.

Errors (all :class:`DeliveryError`, carrying the envelope's ``key``)::

    DeliveryError
    ├── DeliveryRejected      this message was refused for good (a bad recipient, a 4xx from the
    │                         ESP API, a 5xx from SMTP): record it as failed (Terminal)
    └── DeliveryUnavailable   nothing could be handed over now (server down, timeouts, 429/5xx
        │                     after retries, SMTP 421, refused credentials): keep the message
        │                     queued and try again later (Transient)
        └── DeliveryDeferred  this message was refused for now (a temporary 4xx from SMTP for
                              its recipient or data: greylisting, a full mailbox) while the
                              transport works: keep it queued, retry it later, send the others
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from typing import Protocol

from personify.errors import PersonifyError, Terminal, Transient


@dataclass(frozen=True)
class Envelope:
    """One message to hand over, with what the index may record (no email addresses)."""

    key: str
    """The idempotency key (unique in ``messages``): a transport never sends one twice."""
    customer_id: str
    template: str
    subject: str
    raw: bytes
    """The whole message in wire format (CRLF line ends, 7-bit): what a transport writes or
    sends and what DKIM signs, byte for byte. (An :class:`EmailMessage` given here is
    serialized, for callers written before ``raw`` existed.)"""
    sender: str = ""
    """The ``From`` address (SMTP ``MAIL FROM``); empty when not given."""
    recipient: str = ""
    """The ``To`` address (SMTP ``RCPT TO``); empty when not given. Never log it."""

    def __post_init__(self) -> None:
        given: object = self.raw
        if isinstance(given, EmailMessage):
            object.__setattr__(self, "raw", given.as_bytes(policy=policy.SMTP))

    @cached_property
    def message(self) -> EmailMessage:
        """:attr:`raw` parsed, with LF line ends in its parts' content (for reading headers
        and parts; parsing costs — send :attr:`raw`)."""
        parsed = BytesParser(policy=policy.SMTP).parsebytes(self.raw.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class Delivered:
    """The outcome of handing one message over."""

    key: str
    new: bool
    """``False`` when this key was already delivered (nothing was sent again)."""
    location: str
    """Where it went: a file, an SMTP server's queue id, an ESP message id."""


class DeliveryError(PersonifyError):
    """A message could not be handed over. ``key`` names it; the message never holds an email
    address."""

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


class DeliveryRejected(DeliveryError, Terminal):
    """The server or ESP refused this message for good: record it as failed with the reason."""


class DeliveryUnavailable(DeliveryError, Transient):
    """The transport cannot hand messages over now: leave them queued, retry later."""


class DeliveryDeferred(DeliveryUnavailable):
    """This message was refused for now (an SMTP 4xx for it), not the transport: leave it
    queued and retry it later; the other messages go on."""


class Transport(Protocol):
    """Hands messages to where email goes. Idempotent by :attr:`Envelope.key`."""

    name: str

    def send(self, envelope: Envelope) -> Delivered:
        """Deliver one message (or nothing, when its key was delivered before)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


class BatchTransport(Transport, Protocol):
    """A transport that hands a batch over concurrently (SMTP pools, ESP APIs)."""

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Delivered | DeliveryError]:
        """Deliver each envelope; one outcome per envelope, in order. A failure of one message
        does not stop the others."""
        ...


def send_many(
    transport: Transport, envelopes: Sequence[Envelope]
) -> list[Delivered | DeliveryError]:
    """Hand ``envelopes`` to ``transport`` — concurrently when it can (``send_many``), else one
    by one. One outcome per envelope, in order: :class:`Delivered` or the
    :class:`DeliveryError` of that message (other exceptions propagate)."""
    batch = getattr(transport, "send_many", None)
    if batch is not None:
        outcomes: list[Delivered | DeliveryError] = batch(envelopes)
        return outcomes
    out: list[Delivered | DeliveryError] = []
    for envelope in envelopes:
        try:
            out.append(transport.send(envelope))
        except DeliveryError as e:
            out.append(e)
    return out
