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
    Template,
    TemplateStore,
    build_context,
    read_customers,
    template_store,
)
from personify.messages.connected import AddressPolicy, prefetch
from personify.messages.locale import customer_locale
from personify.messages.render import localized
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
    fails every item with its reason (nothing is sent blank); so does a locale variant of it
    (``NAME.fr.liquid``), for the items whose customers' locale chooses it. Unsubscribe links revoke
    ``purpose`` (default: the journeys' purpose).
    """
    from personify.delivery import prepare_one  # the package imports this module

    if not items:
        return []
    customers = read_customers(wh, [customer_id for _, customer_id, _ in items])
    store = store or template_store(project)
    # recipients grouped by the template variant their locale chooses (NAME.fr.liquid …): each
    # variant parsed and planned once, its connected content prefetched for its own recipients
    variant_of: dict[str | None, str] = {}
    groups: dict[str, list[Item]] = {}
    chosen: list[str] = []  # each item's variant
    for item in items:
        locale = customer_locale(customers.get(item[1]))
        if locale not in variant_of:
            variant_of[locale] = store.variant_for(template, locale)
        chosen.append(variant_of[locale])
        groups.setdefault(chosen[-1], []).append(item)
    parsed_of: dict[str, Template | RenderError] = {}
    for variant in groups:
        try:
            parsed_of[variant] = store.get(template, variant or None)
        except RenderError as e:
            parsed_of[variant] = e
    when = date or clock.now()
    for variant, group in groups.items():
        parsed = parsed_of[variant]
        if isinstance(parsed, Template) and parsed.connected:  # distinct URLs, concurrently
            prefetch(
                parsed.connected,
                [  # the URLs prepare_one renders: in the email's language
                    localized(parsed, build_context(customers[c], v))
                    for _, c, v in group
                    if c in customers
                ],
                parsed.file,
                policy=AddressPolicy.from_config(project.config.email.connected_allow),
            )
    out: list[Envelope | PrepareFailure] = []
    for (key, customer_id, variables), variant in zip(items, chosen, strict=True):
        customer = customers.get(customer_id)
        parsed = parsed_of[variant]
        if isinstance(parsed, RenderError):  # this variant does not parse: nothing sent blank
            out.append(PrepareFailure(key, customer_id, "render", parsed.reason, parsed))
            continue
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
