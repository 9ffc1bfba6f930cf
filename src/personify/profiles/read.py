"""Profile reads: one customer, unified — identities, fields with provenance, traits, consent,
segments, tags, refused merges and recent events."""

from __future__ import annotations

import copy
import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from personify.config import Project
from personify.errors import NotFound
from personify.identity.explain import find_node
from personify.identity.normalize import normalize_phone, phone_region
from personify.privacy.fields import cipher_of, decrypt_rows, open_value, show_identifiers
from personify.profiles.survivorship import Observation, rank, rule_for
from personify.realtime import profile_cache
from personify.warehouse.base import Warehouse

RECENT_EVENTS = 20


def resolve_customer(wh: Warehouse, text: str, project: Project) -> str:
    """The current customer id for a customer id (merged ones followed), email or identifier."""
    found = customer_by_id(wh, text)
    if found is not None:
        return found
    node = find_node(wh, text, project.config.identity)
    if node.customer_id is None:
        why = "a blocked value" if node.blocked else "only linked to anonymous identifiers"
        raise NotFound(f"{node.kind} {text!r} belongs to no customer ({why})")
    return node.customer_id


def customer_by_id(wh: Warehouse, text: str) -> str | None:
    """The current customer id for a customer id (merged ones followed), or ``None`` — ``text``
    is compared with ids only, never with emails or other identifiers (a text that is no id
    costs the same two lookups, whether or not someone has it as an email)."""
    row = wh.fetch(
        "SELECT coalesce(merged_into, customer_id) FROM customer_ids WHERE customer_id = ?",
        [text.strip()],
    )
    if row and row[0][0]:
        return str(row[0][0])
    # a customer the graph never resolved (rows imported straight into `customers`)
    if wh.scalar("SELECT 1 FROM customers WHERE customer_id = ?", [text.strip()]) is not None:
        return text.strip()
    return None


def _rows(wh: Warehouse, sql: str, params: Sequence[object]) -> list[dict[str, Any]]:
    table = wh.fetch_arrow(sql, params)
    return [dict(r) for r in table.to_pylist()]


def _fields(wh: Warehouse, customer_id: str, project: Project) -> dict[str, Any]:
    by_field: dict[str, list[Observation]] = defaultdict(list)
    for field, value, source, observed_at, origin in wh.fetch(
        "SELECT o.field, o.value, o.source, o.observed_at, o.origin FROM profile_observations o "
        "JOIN identity_nodes n ON n.node_id = o.node_id WHERE n.customer_id = ?",
        [customer_id],
    ):
        by_field[field].append(Observation(value, source, observed_at, origin))
    out: dict[str, Any] = {}
    cipher = cipher_of(wh)
    sealed = cipher is not None and "phone" in cipher.columns  # (kept as the source wrote it)
    for field in sorted(by_field):
        rule = rule_for(project.config.survivorship, field)
        ranked = rank(by_field[field], rule)
        best = ranked[0]
        shown = functools.partial(open_value, wh, field)  # encrypted fields: plain text
        value = shown(best.value)
        out[field] = {
            "value": value,
            "source": best.source,
            "observed_at": best.observed_at,
            "origin": best.origin,
            "rule": rule.rule,
            "beat": [
                {"value": shown(o.value), "source": o.source, "observed_at": o.observed_at}
                for o in ranked[1:]
            ],
        }
    phone = out.get("phone")
    if phone is not None and phone["value"] is not None and not sealed:  # as the profile holds it
        country = (out.get("country") or {}).get("value")
        region = phone_region(country, project.config.identity.phone_region)
        phone["value"] = normalize_phone(phone["value"], region) or phone["value"]
    return out


def _consent(wh: Warehouse, customer_id: str, project: Project) -> list[dict[str, Any]]:
    """Consent rows of the customer: keyed by its customer id, or by an id a source knows it by
    (a consent log keyed by shop ids: ``identity.source_kinds`` names the kind of its source)."""
    kinds = project.config.identity.source_kinds
    pairs = sorted(kinds.items())
    mapping = " UNION ALL ".join(
        "SELECT CAST(? AS VARCHAR) AS source, CAST(? AS VARCHAR) AS kind" for _ in pairs
    )
    sql = (
        "SELECT c.purpose, c.channel, c.status, c.source, c.updated_at FROM consents c "
        f"LEFT JOIN ({mapping or 'SELECT NULL AS source, NULL AS kind WHERE FALSE'}) sk "
        "ON sk.source = c.source LEFT JOIN identities i "
        "ON i.kind = coalesce(sk.kind, c.source || '_id') AND i.value = c.customer_id "
        "WHERE c.customer_id = ? OR i.customer_id = ? "
        "ORDER BY c.purpose, c.channel, c.updated_at DESC, c.source"
    )
    params = [v for pair in pairs for v in pair]
    return _rows(wh, sql, [*params, customer_id, customer_id])


def read_profile(wh: Warehouse, text: str, project: Project) -> dict[str, Any]:
    """Everything about the customer ``text`` names, through the profile cache
    (:mod:`personify.realtime.cache`). Raises :class:`NotFound`."""
    customer_id = resolve_customer(wh, text, project)
    cache = profile_cache(wh, project)
    cached = cache.get(customer_id, lambda c: _read(wh, c, project), kind="profile")
    # what the profile build writes is cached (every build invalidates its customers); consent,
    # memberships, tags and events change without a build: read live
    one = [customer_id]
    return {
        **copy.deepcopy(cached),
        "consent": _consent(wh, customer_id, project),
        "segments": _rows(
            wh,
            "SELECT segment, entered_at FROM segment_memberships WHERE customer_id = ? "
            "AND exited_at IS NULL ORDER BY segment",
            one,
        ),
        "tags": _rows(
            wh,
            "SELECT tag, rule, assigned_at FROM customer_tags WHERE customer_id = ? ORDER BY tag",
            one,
        ),
        "recent_events": _rows(
            wh,
            "SELECT message_id, type, event, timestamp, source FROM events "
            f"WHERE customer_id = ? ORDER BY timestamp DESC, message_id LIMIT {RECENT_EVENTS}",
            one,
        ),
    }


def _read(wh: Warehouse, customer_id: str, project: Project) -> dict[str, Any]:
    rows = _rows(wh, "SELECT * FROM customers WHERE customer_id = ?", [customer_id])
    if not rows:
        raise NotFound(
            f"customer {customer_id} has no profile yet", hint="run `personify run` first"
        )
    rows = decrypt_rows(wh, rows)  # privacy.encrypted_fields in plain text
    one = [customer_id]
    identities = _rows(
        wh,
        "SELECT kind, value, source, first_seen, last_seen FROM identities "
        "WHERE customer_id = ? ORDER BY kind, value",
        one,
    )
    refused = _rows(
        wh,
        "SELECT na.kind AS kind, na.value AS value, nb.kind AS other_kind, "
        "nb.value AS other_value, r.source, r.detail, r.decided_at "
        "FROM identity_refusals r JOIN identity_nodes na ON na.node_id = r.a "
        "JOIN identity_nodes nb ON nb.node_id = r.b "
        "WHERE na.customer_id = ? OR nb.customer_id = ? ORDER BY r.decided_at, r.a, r.b",
        [customer_id, customer_id],
    )
    show_identifiers(wh, one, identities + refused)  # blind emails/phones as addresses
    return {
        "customer_id": customer_id,
        "profile": rows[0],
        "fields": _fields(wh, customer_id, project),
        "identities": identities,
        "merged_ids": [
            r[0]
            for r in wh.fetch(
                "SELECT customer_id FROM customer_ids WHERE merged_into = ? ORDER BY 1", one
            )
        ],
        "refused_merges": refused,
    }
