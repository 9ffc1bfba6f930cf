"""Double opt-in: consent counts only once the person confirms it from their mailbox.

1. A sign-up that needs confirmation calls :func:`request_confirmation` (or ``personify consent
   request``): a ``pending`` row in ``consent_history`` with the sign-up's proof, and a signed
   link — ``privacy.confirm_url`` + token — for the confirmation email. Nothing is granted yet:
   the gate stays closed (a pending request is not in ``consents``).
2. ``GET`` on the link shows a page with a button and changes nothing (mail scanners and link
   previews follow links); ``POST`` (the button) verifies the token and records the consent
   ``granted`` with ``confirmed_at``, the confirming IP and user agent as proof
   (:func:`confirm`).

Tokens are :mod:`personify.signed` tokens (HMAC-SHA256 under ``signing_key``, domain
``confirm-consent``), name the customer, purpose and channel, and expire after
:data:`VALID_FOR`.

:func:`send_confirmation` emails the link through the project's transport (outbox, SMTP, ESP):
template ``confirm_subscription`` (the project's ``templates/``, else the packaged one),
recorded in ``messages`` (journey ``double_opt_in``, purpose ``transactional`` — the person asked
for it, so no marketing consent is needed; it grants nothing by itself). Idempotent: one email
per person, purpose, channel and day (key ``doi:…``) however often the sign-up is repeated —
which also keeps a sign-up form from being used to flood someone's mailbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from personify import clock
from personify.config import Project
from personify.errors import NotFound, PersonifyError
from personify.privacy.consent import record_pending, set_consent
from personify.privacy.crypto import SUBJECT, project_ring, seal_field
from personify.privacy.hashing import project_key
from personify.signed import seal, unseal
from personify.warehouse.base import Warehouse

VALID_FOR = timedelta(days=7)
_DOMAIN = "confirm-consent"
TEMPLATE = "confirm_subscription"
JOURNEY = "double_opt_in"
PURPOSE = "transactional"
_PACKAGED = Path(__file__).resolve().parents[1] / "scaffold" / "templates"


@dataclass(frozen=True)
class Claim:
    customer_id: str
    purpose: str
    channel: str
    issued_at: datetime


def sign(key: bytes, customer_id: str, purpose: str, channel: str, issued_at: datetime) -> str:
    doc = {"c": customer_id, "p": purpose, "h": channel, "t": int(issued_at.timestamp())}
    return seal(key, _DOMAIN, doc)


def verify(key: bytes, token: str, now: datetime) -> Claim | None:
    """The claim of a valid, unexpired token; ``None`` otherwise."""
    doc = unseal(key, _DOMAIN, token)
    if doc is None:
        return None
    try:
        issued = datetime.fromtimestamp(int(doc["t"]), tz=now.tzinfo)
        claim = Claim(str(doc["c"]), str(doc["p"]), str(doc["h"]), issued)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return None
    return claim if issued <= now + timedelta(minutes=5) and now - issued <= VALID_FOR else None


def request_confirmation(
    wh: Warehouse,
    project: Project,
    customer_id: str,
    *,
    purpose: str,
    channel: str = "email",
    source: str = "double_opt_in",
    proof: Mapping[str, Any] | None = None,
) -> str:
    """Record a pending request and return the confirmation link to email the person."""
    now = clock.now()
    record_pending(
        wh,
        subject=customer_id,
        purpose=purpose,
        channel=channel,
        source=source,
        at=now,
        proof=proof,
        cipher=project_ring(project),
    )
    token = sign(project_key(project), customer_id, purpose, channel, now)
    return f"{project.config.privacy.confirm_url}{token}"


def confirm(
    wh: Warehouse, project: Project, token: str, *, proof: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Grant the consent a valid token asks for (``None`` for an invalid or expired token)."""
    now = clock.now()
    claim = verify(project_key(project), token, now)
    if claim is None:
        return None
    return set_consent(
        wh,
        claim.customer_id,
        purpose=claim.purpose,
        channel=claim.channel,
        status="granted",
        source="double_opt_in",
        at=now,
        proof={**(proof or {}), "confirmed_at": now, "requested_at": claim.issued_at.isoformat()},
        source_kinds=project.config.identity.source_kinds,
        cipher=project_ring(project),
    )


def _template(project: Project) -> Any:
    """The project's ``confirm_subscription`` template, else the packaged one."""
    from personify.messages import TemplateStore, template_store

    try:
        return template_store(project).get(TEMPLATE)
    except NotFound:
        return TemplateStore(_PACKAGED).get(TEMPLATE)


def send_confirmation(
    wh: Warehouse,
    project: Project,
    customer_id: str,
    url: str,
    *,
    purpose: str,
    channel: str = "email",
) -> dict[str, Any]:
    """Email the confirmation link ``url`` to the customer (see the module doc). Returns
    ``{"key", "status": "sent" | "already_sent" | "failed", "error"?}``; raises nothing for a
    person without a usable address (``failed`` with the reason, recorded in ``messages``)."""
    from personify.delivery import prepare_one, transport_for
    from personify.messages import read_customers
    from personify.warehouse.schema import MESSAGES

    now = clock.now()
    key = f"doi:{customer_id}:{purpose}:{channel}:{now:%Y-%m-%d}"
    written = wh.load(
        MESSAGES,
        pa.table(
            {
                "idempotency_key": [key],
                "customer_id": [customer_id],
                "journey": [JOURNEY],
                "template": [TEMPLATE],
                "status": ["queued"],
                "purpose": [PURPOSE],
                "decided_at": pa.array([now], pa.timestamp("us", tz="UTC")),
            }
        ),
        on_conflict="ignore",
    )
    if (
        not written
        and wh.scalar("SELECT status FROM messages WHERE idempotency_key = ?", [key]) == "sent"
    ):
        return {"key": key, "status": "already_sent"}
    transport = None
    try:
        customer = read_customers(wh, [customer_id]).get(customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} has no profile yet")
        variables = {
            "confirmation_url": url,
            "purpose": purpose,
            "valid_days": VALID_FOR.days,
        }
        envelope = prepare_one(
            project, _template(project), customer, variables, key=key, date=now, purpose=purpose
        )
        transport = transport_for(project)
        transport.send(envelope)
    except PersonifyError as e:  # no usable address, a template error, the transport down
        wh.execute(
            "UPDATE messages SET status = 'failed', error = ? WHERE idempotency_key = ?",
            [type(e).__name__ + ": " + e.message[:200], key],
        )
        return {"key": key, "status": "failed", "error": e.message}
    finally:
        if transport is not None:
            transport.close()
    wh.execute(
        "UPDATE messages SET status = 'sent', sent_at = ?, subject = ?, transport = ? "
        "WHERE idempotency_key = ?",
        [
            clock.now(),
            seal_field(project_ring(project), SUBJECT, envelope.subject),
            getattr(transport, "name", None),
            key,
        ],
    )
    return {"key": key, "status": "sent"}
