"""A send step's variables for a whole batch, resolved at send time with one call per provider.

``with:`` maps template variables to literals or to providers (``{from: …}``):

- ``cart`` — ``{id, items, url}``: the trigger key's cart (``offers.cart_contents``); the ``url``
  option is a pattern with ``{cart_id}``;
- ``recommendations`` — products for that cart (``offers.recommend_for_carts``), ``k`` (4);
- ``new_arrivals`` — new products in the customer's preferred categories
  (``offers.new_arrivals``), ``k`` (4);
- ``discount`` — a personal code of ``campaign`` (``offers.issue_codes``), issued once per message
  key: ``{code, label, value, kind, currency, expires_at, expires_on}`` (a preview issues
  nothing: the code already issued for the key, else ``offers.PREVIEW_CODE``). Typed values, for
  templates to write in the recipient's language: ``expires_at`` is the instant (an
  :class:`~personify.messages.labels.Expiry`: a datetime that prints its day — in the
  customer's time zone — in the email's language; in English as before, ``08 December 2026``),
  ``expires_on`` the
  day it expires in the customer's time zone (``customers.timezone``, else the project's), a
  date; ``value``/``kind``/``currency`` what it takes off (``{{ discount | discount_amount }}``:
  ``15 %`` in French). ``label`` is the English ``15% off``, written in the template's
  language when rendered (``15 % de réduction``, :mod:`personify.messages.labels`);
- ``profile`` — a field of the customer's profile, read now (``field``, ``default``);
- ``tag`` — a content variable of a rule tag (``tag``, ``variable``, ``default``);
- ``event`` — the event that triggered the journey (event triggers): ``{event, message_id,
  timestamp, properties, context, traits}``, or the field at ``path`` (``properties.items``),
  ``default`` when it has none. A keyed trigger's event is the first of its key's events that
  passed the trigger's filter (the one that entered).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from personify.config import Project
from personify.journeys.definitions import Step, Trigger, Variable
from personify.messages import read_customers
from personify.messages.labels import Expiry as Expiry  # (its home before: kept importable)
from personify.warehouse.base import Warehouse


@dataclass(frozen=True)
class Pending:
    """One queued message to resolve variables for."""

    key: str
    customer_id: str
    trigger_key: str


def resolve(
    wh: Warehouse,
    project: Project,
    step: Step,
    batch: Sequence[Pending],
    *,
    trigger: Trigger,
    now: datetime,
    preview: bool = False,
    skip: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """Each message's variables (by idempotency key), every provider called once per batch.

    ``trigger``: the step's journey's trigger (``{from: event}`` reads the event that entered).
    ``preview``: write nothing (no discount code is issued, see the module docstring).
    ``skip``: variables not to resolve (the caller gives them)."""
    from personify import offers

    out: dict[str, dict[str, Any]] = {m.key: {} for m in batch}
    carts = {m.trigger_key: m.customer_id for m in batch}
    cache: dict[str, Any] = {}
    for var in step.variables:
        if var.name in skip:
            continue
        if var.provider is None:
            for m in batch:
                out[m.key][var.name] = var.value
            continue
        values = _provide(wh, project, var, trigger, batch, carts, cache, now, offers, preview)
        for m in batch:
            out[m.key][var.name] = values(m)
    return out


def _provide(
    wh: Warehouse,
    project: Project,
    var: Variable,
    trigger: Trigger,
    batch: Sequence[Pending],
    carts: dict[str, str],
    cache: dict[str, Any],
    now: datetime,
    offers: Any,
    preview: bool,
) -> Any:
    opts = var.options
    customers = sorted({m.customer_id for m in batch})
    if var.provider == "cart":
        if "cart" not in cache:
            cache["cart"] = offers.cart_contents(wh, list(carts), now=now)
        contents = cache["cart"]
        url = str(opts.get("url") or "")
        return lambda m: {
            "id": m.trigger_key,
            "items": contents.get(m.trigger_key, []),
            "url": url.replace("{cart_id}", m.trigger_key),
        }
    if var.provider == "recommendations":
        picks = offers.recommend_for_carts(wh, carts, now=now, k=int(opts.get("k", 4)))
        return lambda m: picks.get(m.trigger_key, [])
    if var.provider == "new_arrivals":
        arrivals = offers.new_arrivals(wh, customers, now=now, k=int(opts.get("k", 4)))
        return lambda m: arrivals.get(m.customer_id, [])
    if var.provider == "discount":
        campaign = str(opts["campaign"])
        issue = offers.preview_codes if preview else offers.issue_codes
        codes = issue(wh, project, [(m.key, m.customer_id, campaign) for m in batch], now=now)
        if "profile" not in cache:
            cache["profile"] = read_customers(wh, customers)
        people = cache["profile"]
        home: tzinfo = _zone_named(project.config.timezone) or UTC  # for customers without
        return lambda m: _code(
            codes.get(m.key),
            _zone_named((people.get(m.customer_id) or {}).get("timezone")) or home,
        )
    if var.provider == "event":
        if trigger.kind != "event":  # refused when the journey is read
            raise ValueError(f"{{from: event}} needs an event trigger, not a {trigger.kind}")
        if "event" not in cache:
            cache["event"] = _trigger_events(wh, trigger.name, trigger.key, trigger.where, batch)
        found, keyed = cache["event"], trigger.key is not None
        path, fallback = opts.get("path"), opts.get("default")

        def event_of(m: Pending) -> Any:
            event = found.get((m.customer_id, m.trigger_key) if keyed else m.trigger_key)
            return _or(_at(event, str(path)) if path else event, fallback)

        return event_of
    if var.provider == "profile":
        if "profile" not in cache:
            cache["profile"] = read_customers(wh, customers)
        profiles = cache["profile"]
        name, default = str(opts["field"]), opts.get("default")
        return lambda m: _or(profiles.get(m.customer_id, {}).get(name), default)
    # tag
    tag, variable, fallback = str(opts["tag"]), opts.get("variable"), opts.get("default")
    rows = wh.fetch(
        "SELECT customer_id, variables FROM customer_tags WHERE tag = ? AND customer_id IN "
        f"({', '.join('?' for _ in customers)})",
        [tag, *customers],
    )
    found = {str(c): _json(v) for c, v in rows}
    return lambda m: _or(
        (found.get(m.customer_id) or {}).get(variable) if variable else found.get(m.customer_id),
        fallback,
    )


_EVENT_FIELDS = ("event", "message_id", "timestamp", "properties", "context", "traits")


def _trigger_events(
    wh: Warehouse, name: str, key: str | None, where: str | None, batch: Sequence[Pending]
) -> dict[Any, dict[str, Any]]:
    """The triggering event of each message of ``batch``: by message id (``trigger_key``) for an
    unkeyed trigger, else by (customer, key value) — the first that passed the filter."""
    from personify.journeys.engine import _key_sql

    keys = sorted({m.trigger_key for m in batch})
    marks = ", ".join("?" for _ in keys)
    columns = ", ".join(f"e.{c}" for c in _EVENT_FIELDS)
    if key is None:
        rows = wh.fetch(
            f"SELECT e.message_id, {columns} FROM events AS e WHERE e.message_id IN ({marks})", keys
        )
        return {str(r[0]): _event(r[1:]) for r in rows}
    passes = f" AND ({where}) IS TRUE" if where else ""
    customers = sorted({m.customer_id for m in batch})
    rows = wh.fetch(
        f"SELECT e.customer_id, {_key_sql(key)}, {columns} FROM events AS e "
        f"WHERE e.type = 'track' AND e.event = ? AND {_key_sql(key)} IN ({marks}) "
        f"AND e.customer_id IN ({', '.join('?' for _ in customers)}){passes} "
        "ORDER BY e.timestamp DESC, e.message_id DESC",
        [name, *keys, *customers],
    )
    return {(str(r[0]), str(r[1])): _event(r[2:]) for r in rows}  # (the first wins: last set)


def _event(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_EVENT_FIELDS, row, strict=True))
    for name in ("properties", "context", "traits"):
        out[name] = _json(out[name]) or {}
    if isinstance(out["timestamp"], datetime):
        out["timestamp"] = out["timestamp"].isoformat()
    return out


def _at(value: Any, path: str) -> Any:
    """The field at a dotted ``path`` inside ``value`` (``None`` where it has none)."""
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _code(row: dict[str, Any] | None, zone: tzinfo) -> dict[str, Any] | None:
    """A code's row as templates get it: ``expires_at`` an :class:`Expiry` printing its day in
    ``zone`` (the customer's), ``expires_on`` that day."""
    if row is None:
        return None
    expires = row.get("expires_at")
    if not isinstance(expires, datetime):
        return {**row, "expires_on": None}
    at = Expiry.of(expires, zone)  # (printed: its day in the customer's zone)
    day: date = at.local_date()
    return {**row, "expires_at": at, "expires_on": day}


def _zone_named(name: object) -> ZoneInfo | None:
    """The IANA zone ``name`` (a customer's ``timezone``), None when there is none or unknown."""
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ValueError, KeyError, OSError):
        return None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
