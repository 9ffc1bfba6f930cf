"""Many emails of one template at once: what a journey step hands over after deciding.

:func:`prepare_batch` does for a whole batch what :func:`~personify.delivery.prepare` does for
one customer — but reads every profile in **one** query (fresh: at send time, not at decision
time), parses the template once, and never raises for one bad item: a customer who is gone, has
no usable address, or whose variables do not render gets a :class:`PrepareFailure` (record the
message as ``failed`` with its :attr:`~PrepareFailure.reason`) in the item's place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from personify import clock
from personify.config import Project
from personify.delivery.mime import AddressError
from personify.delivery.transport import Envelope
from personify.errors import NotFound, PersonifyError
from personify.messages import (
    RenderError,
    TemplateStore,
    build_context,
    read_customers,
    template_store,
)
from personify.messages.connected import AddressPolicy, prefetch
from personify.warehouse.base import Warehouse

FailureKind = Literal["not_found", "address", "render"]

Item = tuple[str, str, Mapping[str, Any]]
"""One email to prepare: (idempotency key, customer id, the template's variables)."""


@dataclass(frozen=True)
class PrepareFailure:
    """An item of a batch that cannot become an email (nothing is sent for it)."""

    key: str
    customer_id: str
    kind: FailureKind
    """``not_found`` (no such customer now), ``address`` (no usable email address) or
    ``render`` (the template cannot render for this customer)."""
    reason: str
    """What to record in ``messages`` (names the template, line and variable; no personal
    data)."""
    error: PersonifyError


def prepare_batch(
    wh: Warehouse,
    project: Project,
    template: str,
    items: Sequence[Item],
    *,
    store: TemplateStore | None = None,
    date: datetime | None = None,
    purpose: str | None = None,
) -> list[Envelope | PrepareFailure]:
    """Envelopes of ``template`` for ``items`` (key, customer id, variables), in their order.

    Profiles are read now, in one query. Each item's result is its :class:`Envelope` or a
    :class:`PrepareFailure`. Raises only for the whole batch: NotFound (no such template) and
    ConfigError (no ``signing_key`` to sign unsubscribe links). A template that does not parse
    fails every item with its reason (nothing is sent blank). Unsubscribe links revoke
    ``purpose`` (default: the journeys' purpose).
    """
    from personify.delivery import prepare_one  # the package imports this module

    if not items:
        return []
    customers = read_customers(wh, [customer_id for _, customer_id, _ in items])
    store = store or template_store(project)
    try:
        parsed = store.get(template)
    except RenderError as e:
        return [PrepareFailure(k, c, "render", e.reason, e) for k, c, _ in items]
    when = date or clock.now()
    if parsed.connected:  # the batch's distinct URLs, fetched concurrently, then cached
        prefetch(
            parsed.connected,
            [build_context(customers[c], v) for _, c, v in items if c in customers],
            f"{template}.liquid",
            policy=AddressPolicy.from_config(project.config.email.connected_allow),
        )
    out: list[Envelope | PrepareFailure] = []
    for key, customer_id, variables in items:
        customer = customers.get(customer_id)
        if customer is None:
            missing = NotFound(f"no customer {customer_id!r}")
            out.append(PrepareFailure(key, customer_id, "not_found", "customer not found", missing))
            continue
        try:
            out.append(
                prepare_one(
                    project, parsed, customer, variables, key=key, date=when, purpose=purpose
                )
            )
        except RenderError as e:
            out.append(PrepareFailure(key, customer_id, "render", e.reason, e))
        except AddressError as e:
            out.append(PrepareFailure(key, customer_id, "address", "no usable email address", e))
    return out
