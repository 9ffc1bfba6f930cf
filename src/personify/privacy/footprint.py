"""Where a person's data lives: every table, classified, and the rows of each that are theirs.

:data:`NOT_PERSONAL` names the tables that hold no personal data (the catalogue, bookkeeping,
keyed hashes), :data:`STAFF` those whose only personal data may be staff's (admin token names).
Tables with their own rule are in :data:`RULES`; every other table with a ``customer_id`` column
is theirs where ``customer_id`` is one of the person's ids — so a table added later (journey
state, delivery ledgers …) is exported and erased without code here. A table that is in none of
these (personal data without a ``customer_id``) makes :func:`unclassified` non-empty, and the
test suite fails until it gets a rule.

A :class:`Footprint` is computed from the identity graph: the customer's ids (with those merged
into it), every identifier node (emails, phones, user ids, anonymous ids, source ids), and the
``(source, id)`` pairs source-keyed rows carry (``identity.source_kinds``).

Two rules keep other people out of a footprint:

* events (:func:`_events`): one resolved to another live customer is never the person's; one
  resolved to them (or an id merged into theirs) is theirs; a *loose* one — unresolved (stored
  since the last identity pass) or resolved to a stale id (merged elsewhere, retired, erased) — is
  theirs by its user id (stitching never gives a user-id event to someone else) or, without one,
  by an anonymous id of theirs that no other customer's events carry. Without a user id and on an
  anonymous id other customers' events carry too (a device shared with someone identity kept
  apart — a refused merge: :attr:`Footprint.shared`) it cannot be attributed: it is only
  *possibly* theirs (:data:`POSSIBLY`) — the export lists it apart and erasure deletes it, since
  kept it would still identify them, and the next identity pass would rebuild an identity from it;
* free text (quarantined payloads, report samples) mentions an identifier only as a whole token
  (:func:`mention_pattern`): ``ann@ex.example`` is not in ``joann@ex.example``, nor the id
  ``100121`` in ``SKU-100121``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from personify.config import IdentityConfig
from personify.privacy.subjects import customer_keys
from personify.warehouse.base import UNNEST, Warehouse
from personify.warehouse.schema import TABLES, Table

NOT_PERSONAL: frozenset[str] = frozenset(
    {
        "products",
        "file_imports",
        "source_state",
        "pipeline_runs",
        "identity_state",
        "segment_state",
        "consent_kinds",
        "erasure_progress",
        "journey_state",
        "webhook_receipts",
        "reconciliation_runs",
        "source_fields",
        "schema_changes",
        "destination_state",
        "destination_identifiers",  # keyed hashes (erased with the person's records)
        "list_uploads",
        "alert_state",  # alerts name sources, journeys, destinations and count (no people)
        "alert_notifications",
        "predictive_fits",  # the models' parameters and fit quality (no identifiers)
        "event_forwards",  # message ids and masked answers; the erasure's own step deletes
        # a person's (``event_forwards``, before their events go)
        "segment_errors",  # a segment's name, file and the warehouse's error, masked
    }
)
"""Tables without personal data in the clear (tombstones and ``destination_state``
hold keyed hashes — the latter also, for a destination that removes records, each record's key
encrypted; the erasure, step ``destination:NAME``, finds a person's pushed records by those
hashes and keeps, at a destination that removes, only the hash and encrypted key until the next
push removes the record there, forgetting them elsewhere; schema drift tables hold field names and
types, never values; alerts hold names and counts, predictive fits the models' parameters)."""

STAFF: frozenset[str] = frozenset({"audit_log", "console_sessions"})
"""Tables holding no customer's data but maybe staff's: admin token *names* —
``console_sessions.token_name``, ``audit_log.actor`` (``api:<name>``, ``console:<name>``) —
which operators choose and may make their holder's name (``alice``), so they are personal data
of that employee, not of any customer. No customer's export or erasure touches them (they name
no customer: the audit log keys its subject by a keyed hash); a token's sessions are kept while
they last (:data:`personify.server.console.auth.SESSION_SECONDS`; expired rows are deleted by the
next sign-in), the audit log for good (it proves who did what, append-only). Naming tokens by
role (``support``, ``dpo``) keeps people's names out of both; the server logs no token name."""

NOT_CUSTOMERS: frozenset[str] = NOT_PERSONAL | STAFF
"""Tables outside every customer's footprint."""


MIN_SEARCH_LENGTH = 6
"""Identifiers shorter than this (a CRM id ``c1``) are not searched for in free text: they would
match other people's payloads."""

_IN = f"IN (SELECT {UNNEST})"

EMAIL_CHARS = "a-z0-9._%+-"
"""Characters that continue an address's local part (before it): ``jo`` + ``ann@ex.example`` is
someone else. Quotes, ``<``, ``:``, ``=`` and spaces delimit an address in text."""
DOMAIN_CHARS = "a-z0-9-"
"""Characters that continue a domain (after it); so does ``.`` followed by one of them
(``ann@ex.example.org``) — a full stop ending a sentence does not."""
ID_CHARS = "a-z0-9_-"
"""Characters that continue an id on either side (``SKU-SPO-100121`` does not mention
``100121``)."""
_LIVE = "SELECT customer_id FROM customer_ids WHERE status = 'active' AND merged_into IS NULL"
"""SQL: the current customer ids (not merged into another, not retired)."""


def _literal(term: str) -> str:
    """``term`` as a regular expression matching itself, in the syntax RE2 (DuckDB), PostgreSQL
    and Python share: a backslash before punctuation only (before a letter it would be an
    escape in PostgreSQL)."""
    return re.sub(r"([\\.^$*+?()\[\]{}|])", r"\\\1", term)


def mention_pattern(terms: Iterable[str]) -> str | None:
    """A regular expression (for lower-cased text) finding any of the lower-cased ``terms`` as
    a whole token, or ``None`` without terms. Terms with ``@`` are addresses, bounded by
    :data:`EMAIL_CHARS` before and :data:`DOMAIN_CHARS` after; the others ids, bounded by
    :data:`ID_CHARS`. No look-around (RE2 has none): the bounding characters are matched."""
    emails = sorted({t for t in terms if "@" in t})
    ids = sorted({t for t in terms if t and "@" not in t})
    parts = []
    if emails:
        alts = "|".join(_literal(t) for t in emails)
        parts.append(f"(^|[^{EMAIL_CHARS}])({alts})($|[^.{DOMAIN_CHARS}]|[.]($|[^{DOMAIN_CHARS}]))")
    if ids:
        alts = "|".join(_literal(t) for t in ids)
        parts.append(f"(^|[^{ID_CHARS}])({alts})($|[^{ID_CHARS}])")
    return "|".join(parts) or None


@dataclass(frozen=True)
class Footprint:
    """The keys a person's rows are found by."""

    customer_id: str
    customer_ids: tuple[str, ...]
    """The customer id and every id merged into it."""
    nodes: tuple[tuple[int, str, str], ...]
    """Identity nodes ``(node_id, kind, value)`` (values normalized)."""
    source_pairs: tuple[str, ...]
    """``source|id`` for every source whose ids are a kind the person holds."""
    plain: tuple[tuple[str, str, str], ...] = ()
    """``(kind, value, plain)`` for the nodes the graph keeps blind (encrypted fields: emails and
    phones are keyed hashes there), with the address recovered from encrypted storage."""
    shared: tuple[str, ...] = ()
    """``anonymous_id|value`` of the person's anonymous ids that other customers' events carry
    too — resolved to another live customer, or carrying another live customer's user id (a
    shared device whose merge identity refused): a loose event without a user id is only
    possibly theirs by such an id (:data:`POSSIBLY`)."""

    def shown(self, kind: str, value: str) -> str:
        """A node's value as people read it: the address for a blind one, when known."""
        for k, v, p in self.plain:
            if k == kind and v == value:
                return p
        return value

    def readable(self, *kinds: str) -> list[str]:
        """:meth:`values`, blind ones replaced by the addresses they stand for."""
        return sorted({self.shown(k, v) for _, k, v in self.nodes if k in kinds})

    def values(self, *kinds: str) -> list[str]:
        return sorted({v for _, k, v in self.nodes if k in kinds})

    def own(self, kind: str) -> list[str]:
        """:meth:`values` of ``kind`` that no other customer carries (see :attr:`shared`)."""
        return [v for v in self.values(kind) if f"{kind}|{v}" not in self.shared]

    @property
    def keys(self) -> list[str]:
        """Every text a record of theirs may be keyed by elsewhere (a destination's key): their
        customer ids and identifier values, blind ones also as the addresses they stand for."""
        shown = {x for _, k, v in self.nodes for x in (v, self.shown(k, v))}
        return sorted(shown | set(self.customer_ids))

    @property
    def node_ids(self) -> list[int]:
        return sorted({n for n, _, _ in self.nodes})

    @property
    def node_pairs(self) -> list[str]:
        return sorted({f"{k}|{v}" for _, k, v in self.nodes})

    @property
    def emails(self) -> list[str]:
        return self.readable("email")

    @property
    def phones(self) -> list[str]:
        return self.readable("phone")

    @property
    def search_terms(self) -> list[str]:
        """Lower-cased identifiers worth searching free text for (payloads, nested JSON)."""
        terms = {v.lower() for v in self.readable("email", "phone")}
        terms |= {v.lower() for _, _, v in self.nodes if len(v) >= MIN_SEARCH_LENGTH}
        return sorted(terms)

    @property
    def mentions(self) -> str | None:
        """:func:`mention_pattern` of :attr:`search_terms`."""
        return mention_pattern(self.search_terms)


def footprint(
    wh: Warehouse, customer_id: str, identity: IdentityConfig, sources: list[str] | None = None
) -> Footprint:
    """The footprint of ``customer_id`` (a current id) as the warehouse holds it now."""
    ids = customer_keys(wh, customer_id)
    nodes = tuple(
        (int(n), str(k), str(v))
        for n, k, v in wh.fetch(
            "SELECT node_id, kind, value FROM identity_nodes WHERE customer_id "
            f"{_IN} ORDER BY node_id",
            [ids],
        )
    )
    if sources is None:
        sources = _sources(wh)
    held: dict[str, set[str]] = {}
    for _, kind, value in nodes:
        held.setdefault(kind, set()).add(value)
    pairs = sorted(f"{s}|{v}" for s in sources for v in held.get(identity.kind_for_source(s), ()))
    from personify.privacy.fields import plain_identifiers

    plain = tuple((k, v, p) for (k, v), p in sorted(plain_identifiers(wh, list(ids)).items()))
    shared = _shared(wh, ids, held)
    return Footprint(customer_id, tuple(ids), nodes, tuple(pairs), plain, shared)


def _shared(wh: Warehouse, ids: list[str], held: Mapping[str, set[str]]) -> tuple[str, ...]:
    """``anonymous_id|value`` of the anonymous ids in ``held`` that other customers' events
    carry: resolved to another live customer, or (loose) carrying another live customer's user
    id — stitching gives such an event to that customer."""
    values = sorted(held.get("anonymous_id", ()))
    if not values:
        return ()
    rows = wh.fetch(
        f"WITH others AS ({_LIVE} AND customer_id NOT {_IN}) "
        f"SELECT DISTINCT trim(anonymous_id) FROM events WHERE trim(anonymous_id) {_IN} "
        "AND (customer_id IN (SELECT customer_id FROM others) OR trim(user_id) IN (SELECT value "
        "FROM identity_nodes WHERE kind = 'user_id' AND customer_id IN (SELECT customer_id "
        "FROM others)))",
        [ids, values],
    )
    return tuple(sorted(f"anonymous_id|{r[0]}" for r in rows))


def _sources(wh: Warehouse) -> list[str]:
    rows = wh.fetch(
        "SELECT DISTINCT source FROM customer_records UNION SELECT DISTINCT source FROM orders "
        "UNION SELECT DISTINCT source FROM tickets UNION SELECT DISTINCT source FROM consents "
        "UNION SELECT DISTINCT source FROM consent_history"
    )
    return sorted(str(r[0]) for r in rows)


Where = tuple[str, list[Any]]
Rule = Callable[[Footprint], Where]


def _keys(f: Footprint) -> Where:
    return f"customer_id {_IN}", [list(f.customer_ids)]


_LOOSE = f"(customer_id IS NULL OR customer_id NOT IN ({_LIVE}))"
"""SQL: an event no live customer holds (unresolved, or resolved to a stale id)."""
_NO_USER = "coalesce(trim(user_id), '') = ''"


def _events(f: Footprint) -> Where:
    """Events resolved to the person; loose ones (:data:`_LOOSE`) by their user id, or, without
    one, by an anonymous id of theirs no other customer's events carry."""
    return (
        f"customer_id {_IN} OR ({_LOOSE} AND (trim(user_id) {_IN} "
        f"OR ({_NO_USER} AND trim(anonymous_id) {_IN})))",
        [list(f.customer_ids), f.values("user_id"), f.own("anonymous_id")],
    )


def _shared_device_events(f: Footprint) -> Where:
    """Loose events without a user id on an anonymous id of theirs that other customers' events
    carry too (:attr:`Footprint.shared`): theirs or the other person's, nobody can tell."""
    shared = [v for v in f.values("anonymous_id") if f"anonymous_id|{v}" in f.shared]
    if not shared:
        return "FALSE", []
    return (
        f"(customer_id IS NULL OR customer_id NOT {_IN}) AND {_LOOSE} AND {_NO_USER} "
        f"AND trim(anonymous_id) {_IN}",
        [list(f.customer_ids), shared],
    )


def _by_source_id(id_col: str) -> Rule:
    def rule(f: Footprint) -> Where:
        return (
            f"customer_id {_IN} OR lower(trim(email)) {_IN} "
            f"OR (source || '|' || trim({id_col})) {_IN} "
            # a sealed address (encrypted fields) ends with its blind value
            f"OR (email LIKE 'encd1:%#%' AND split_part(email, '#', 2) {_IN})",
            [list(f.customer_ids), f.emails, list(f.source_pairs), f.values("email")],
        )

    return rule


def _records(f: Footprint) -> Where:
    return (
        f"lower(trim(email)) {_IN} OR trim(user_id) {_IN} "
        f"OR (source || '|' || trim(record_id)) {_IN}",
        [f.emails, f.values("user_id"), list(f.source_pairs)],
    )


def _consents(f: Footprint) -> Where:
    return (
        f"customer_id {_IN} OR (source || '|' || trim(customer_id)) {_IN}",
        [list(f.customer_ids), list(f.source_pairs)],
    )


def _identities(f: Footprint) -> Where:
    return (
        f"customer_id {_IN} OR (kind || '|' || value) {_IN}",
        [list(f.customer_ids), f.node_pairs],
    )


def _nodes(f: Footprint) -> Where:
    return f"customer_id {_IN} OR node_id IN (SELECT unnest(CAST(? AS BIGINT[])))", [
        list(f.customer_ids),
        f.node_ids,
    ]


def _list_members(f: Footprint) -> Where:
    """Uploaded lists: members by one of the person's identifiers (as the graph holds them,
    blind ones included) or by one of their customer ids."""
    return (
        f"(kind || '|' || value) {_IN} OR (kind = 'customer_id' AND value {_IN})",
        [f.node_pairs, list(f.customer_ids)],
    )


def _node_col(*cols: str) -> Rule:
    def rule(f: Footprint) -> Where:
        parts = [f"{c} IN (SELECT unnest(CAST(? AS BIGINT[])))" for c in cols]
        return " OR ".join(parts), [f.node_ids for _ in cols]

    return rule


def _order_items(f: Footprint) -> Where:
    where, params = _by_source_id("source_customer_id")(f)
    return f"order_id IN (SELECT order_id FROM orders WHERE {where})", params


def _mentioned(text: str, f: Footprint) -> Where:
    """``text`` (an SQL expression) mentions one of ``f``'s identifiers as a whole token."""
    pattern = f.mentions
    if pattern is None:
        return "FALSE", []
    return f"regexp_matches(lower({text}), ?)", [pattern]


def _quarantine(f: Footprint) -> Where:
    return _mentioned("coalesce(payload, '') || ' ' || coalesce(detail, '')", f)


def _mentions(*cols: str, keyed: str | None = None) -> Rule:
    """Rows whose text columns mention one of the person's identifiers (or, with ``keyed``,
    whose ``source|<keyed>`` is one of their source ids)."""

    def rule(f: Footprint) -> Where:
        text = " || ' ' || ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in cols)
        cond, params = _mentioned(text, f)
        if keyed:
            cond += f" OR (source || '|' || trim({keyed})) {_IN}"
            params.append(list(f.source_pairs))
        return cond, params

    return rule


RULES: Mapping[str, Rule] = {
    "events": _events,
    "orders": _by_source_id("source_customer_id"),
    "order_items": _order_items,
    "tickets": _by_source_id("source_customer_id"),
    "customer_records": _records,
    "consents": _consents,
    "consent_history": _consents,
    "identities": _identities,
    "identity_nodes": _nodes,
    "identity_edges": _node_col("a", "b"),
    "identity_refusals": _node_col("a", "b"),
    "profile_observations": _node_col("node_id"),
    "quarantine": _quarantine,
    "reconciliation_discrepancies": _mentions("fields", keyed="record_key"),
    "quality_violations": _mentions("sample"),
    "list_members": _list_members,
}
"""Tables whose rows are found by more than ``customer_id``."""

POSSIBLY: Mapping[str, Rule] = {"events": _shared_device_events}
"""Rows that may be the person's or someone else's (a shared device): not in their export's
tables but listed apart (``possibly_theirs``), and erased with theirs — kept, they would still
identify the person, and the next identity pass would rebuild an identity from them."""


def personal_tables() -> list[Table]:
    """Every table that may hold a person's data, in schema order."""
    return [t for t in TABLES if t.name not in NOT_CUSTOMERS and _classified(t)]


def _classified(t: Table) -> bool:
    return t.name in RULES or "customer_id" in t.column_names


def unclassified() -> list[str]:
    """Tables nobody said how to find a person's rows in (must stay empty)."""
    return [t.name for t in TABLES if t.name not in NOT_CUSTOMERS and not _classified(t)]


def where(table: Table, f: Footprint) -> Where:
    """The condition selecting ``f``'s rows of ``table``."""
    rule = RULES.get(table.name, _keys)
    return rule(f)


def possibly(table: Table, f: Footprint) -> Where | None:
    """The condition selecting ``table``'s rows that are possibly ``f``'s (:data:`POSSIBLY`),
    or ``None`` for a table without such rows."""
    rule = POSSIBLY.get(table.name)
    return rule(f) if rule is not None else None


def erasable(table: Table, f: Footprint) -> Where:
    """:func:`where` or :func:`possibly`: the rows erasing ``f`` deletes."""
    cond, params = where(table, f)
    maybe = possibly(table, f)
    if maybe is None or maybe[0] == "FALSE":
        return cond, params
    return f"({cond}) OR ({maybe[0]})", [*params, *maybe[1]]
