"""What every transport (outbox, SMTP, ESP API) implements."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """One message to hand over, with what the index may record (no email addresses)."""

    key: str
    """The idempotency key (unique in ``messages``): a transport never sends one twice."""
    customer_id: str
    template: str
    subject: str
    message: EmailMessage


@dataclass(frozen=True)
class Delivered:
    """The outcome of handing one message over."""

    key: str
    new: bool
    """``False`` when this key was already delivered (nothing was sent again)."""
    location: str
    """Where it went: a file, an SMTP server's queue id, an ESP message id."""


class Transport(Protocol):
    """Hands messages to where email goes. Idempotent by :attr:`Envelope.key`."""

    name: str

    def send(self, envelope: Envelope) -> Delivered:
        """Deliver one message (or nothing, when its key was delivered before)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
