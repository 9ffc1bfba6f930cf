"""The MIME message of one email: multipart/alternative (text + HTML), UTF-8, CRLF.

Headers: ``From``, ``To`` (display names encoded; CR, LF and other control characters in them are
replaced, so customer data can never add a header), ``Subject``, ``Date``, ``Message-ID``
(derived from the idempotency key: a retry carries the same id), ``List-Unsubscribe`` (https and
optionally mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from personify.errors import PersonifyError, Terminal
from personify.messages import RenderedEmail

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+$")


class AddressError(PersonifyError, Terminal):
    """An email address that cannot be used (empty, malformed, or carrying line breaks)."""


@dataclass(frozen=True)
class Unsubscribe:
    """The unsubscribe links of one email (the token already signed)."""

    url: str
    mailto: str | None = None


def _clean_name(name: str | None) -> str:
    return _CONTROL.sub(" ", name or "").strip()


def address(email: str, name: str | None = None) -> Address:
    """A header-safe address: control characters dropped from the name, the address checked."""
    addr = (email or "").strip()
    if not _ADDR.match(addr):
        raise AddressError(f"not a usable email address: {addr!r}")
    return Address(display_name=_clean_name(name), addr_spec=addr)


def message_id(key: str | None, domain: str) -> str:
    """``<hash@domain>`` for an idempotency key (stable across retries), else a fresh one."""
    if key is None:
        return make_msgid(domain=domain)
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}@{domain}>"


def build_message(
    email: RenderedEmail,
    *,
    sender: Address,
    recipient: Address,
    date: datetime,
    key: str | None = None,
    unsubscribe: Unsubscribe | None = None,
    reply_to: Address | None = None,
) -> EmailMessage:
    """The message as it will be sent. ``message.as_bytes()`` gives CRLF wire format."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["Subject"] = _CONTROL.sub(" ", email.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id(key, sender.domain or "personify.invalid")
    if unsubscribe is not None:
        links = [f"<{unsubscribe.url}>"]
        if unsubscribe.mailto:
            links.append(f"<mailto:{unsubscribe.mailto}?subject=unsubscribe>")
        msg["List-Unsubscribe"] = ", ".join(links)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Personify-Template"] = f"{email.template}@{email.version}"
    msg.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg
