"""Sightings: every identifier the inputs show, grouped by the input that showed them together.

Inputs (each restricted by a :class:`Scope`):

* ``events`` — ``anonymous_id``, ``user_id``, ``traits.email`` / ``traits.phone`` and an alias's
  ``previous_id`` (taken as an ``anonymous_id``), one group per distinct combination;
* ``customer_records`` — the record's own id (kind: the source's id kind), email, phone, user id;
* ``orders`` and ``tickets`` — the customer id as the source knows it, and the email.

The result is ``_sighted (grp, kind, value, source, first_seen, last_seen, evidence, origin,
linked)`` with values normalized (:mod:`personify.identity.normalize`): identifiers in one ``grp``
belong to one person by that input's evidence. ``linked``: the group held more than one
identifier before normalization — only those groups can link anything (a group of one sighting
makes no edge; one that normalization left with one makes none either, it is only looked at):
most groups of a large pass are an anonymous id alone, and the edges skip them without grouping
every sighting again to count them (1M build: 1.9 s of operator time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from personify.config import IdentityConfig
from personify.identity.normalize import (
    BLIND_KEY_TABLE,
    Blind,
    blind_of,
    blind_sql,
    email_sql,
    id_sql,
    phone_sql,
    sealed_or_blind_sql,
)
from personify.identity.rules import source_kind, source_kind_join
from personify.identity.tables import PHONES, phone_map
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop, scratch, temp_table

SIGHTED = "_sighted"
EVENT_PAIRS = "_ev_pairs"
"""``(uid, aid)``: the distinct ``coalesce(user_id, '')``, ``coalesce(anonymous_id, '')`` of the
events in scope (raw values), filled by :func:`collect` for stitching."""
_RAW = scratch(
    "_sightings",
    grp="BIGINT",
    kind="VARCHAR",
    raw="VARCHAR",
    source="VARCHAR",
    first_seen="TIMESTAMPTZ",
    last_seen="TIMESTAMPTZ",
    evidence="VARCHAR",
    origin="VARCHAR",
    linked="BOOLEAN",
    region="VARCHAR",
)

Where = tuple[str, tuple[object, ...]]
NOTHING: Where = ("FALSE", ())


@dataclass(frozen=True)
class Scope:
    """Which input rows to read: a WHERE condition (and its params) per input table."""

    events: Where = NOTHING
    records: Where = NOTHING
    orders: Where = NOTHING
    tickets: Where = NOTHING
    customers: tuple[str, ...] = field(default=())
    """For the real-time path: customer ids known to be affected (besides those found)."""


_EVIDENCE = (
    "CASE min(CASE type WHEN 'alias' THEN 1 WHEN 'identify' THEN 2 ELSE 3 END) "
    "WHEN 1 THEN 'alias' WHEN 2 THEN 'identify' ELSE 'event' END"
)


_COLUMNS = "grp, kind, raw, source, first_seen, last_seen, evidence, origin, linked, region"
"""``region``: a phone's country as written beside it (``''`` for none and other kinds)."""


def _several(*columns: str) -> str:
    """SQL: more than one of ``columns`` is not NULL."""
    return "(" + " + ".join(f"CAST({c} IS NOT NULL AS INTEGER)" for c in columns) + ") > 1"


def _add(wh: Warehouse, rows: str, kind: str | None, direct: str | None) -> None:
    """Add the sightings ``rows`` (a SELECT of :data:`_RAW`'s columns; ``kind``: their one
    kind, when it is known here).

    ``direct`` (DuckDB): the normalized value over ``s.raw`` — the rows go to :data:`SIGHTED`
    at once, normalized, instead of through :data:`_RAW` and a copy of every sighting (8.4M
    rows of the 1M build); phones still wait in :data:`_RAW` for the parsed ones."""
    if direct is None:
        wh.execute(f"INSERT INTO {_RAW.name} ({_COLUMNS}) {rows}")
        return
    if kind != "phone":
        other = "" if kind is not None else " WHERE s.kind IS DISTINCT FROM 'phone'"
        wh.execute(
            f"INSERT INTO {SIGHTED} SELECT * FROM (SELECT s.grp, s.kind, {direct} AS value, "
            "s.source, s.first_seen, s.last_seen, s.evidence, s.origin, s.linked FROM "
            f"({rows}) s{other}) n WHERE value IS NOT NULL"
        )
    if kind in (None, "phone"):
        phones = "" if kind is not None else " WHERE s.kind = 'phone'"
        wh.execute(f"INSERT INTO {_RAW.name} ({_COLUMNS}) SELECT * FROM ({rows}) s{phones}")


def _numbered(wh: Warehouse) -> tuple[str, str]:
    """SQL: a group's number (unique among the groups of one input table), and the column of
    each input row it is taken from. DuckDB: the smallest row id of the group's rows — an
    integer aggregate like the others; ``row_number() OVER ()`` ran on one thread after the
    grouping (10M events into 2.4M groups: 0.4 s). Other engines number the groups."""
    if wh.dialect == "duckdb":
        return "min(r)", ", rowid AS r"
    return "row_number() OVER ()", ""


def _events(wh: Warehouse, where: Where, direct: str | None) -> None:
    drop(wh, "_ev_groups")
    number, row = _numbered(wh)
    wh.execute(
        f"CREATE TEMP TABLE _ev_groups AS SELECT 4 * {number} AS grp, source, "
        "anonymous_id, user_id, previous_id, email, phone, "
        "min(timestamp) AS first_seen, max(timestamp) AS last_seen, "
        f"min(message_id) AS origin, {_EVIDENCE} AS evidence, "
        f"{_several('anonymous_id', 'user_id', 'previous_id', 'email', 'phone')} AS linked, "
        # the country beside a phone (Segment's traits.address.country), read only where there
        # is a phone
        "min(CASE WHEN phone IS NOT NULL THEN coalesce(traits->>'$.address.country', "
        "traits->>'country') END) AS country FROM ("
        "SELECT source, anonymous_id, user_id, type, timestamp, message_id, traits, "
        "CASE WHEN type = 'alias' THEN previous_id END AS previous_id, "
        f"traits->>'email' AS email, traits->>'phone' AS phone{row} "
        f"FROM events WHERE {where[0]}) ev "
        "GROUP BY source, anonymous_id, user_id, previous_id, email, phone",
        where[1],
    )
    for kind, column in (
        ("anonymous_id", "anonymous_id"),
        ("user_id", "user_id"),
        ("anonymous_id", "previous_id"),
        ("email", "email"),
        ("phone", "phone"),
    ):
        _add(
            wh,
            f"SELECT grp, '{kind}' AS kind, {column} AS raw, source, first_seen, last_seen, "
            f"evidence, origin, linked, {_region(column)} FROM _ev_groups "
            f"WHERE {column} IS NOT NULL",
            kind,
            direct,
        )
    # the distinct (user id, anonymous id) pairs, for stitching these events later in the pass
    # (one read of the events instead of two)
    wh.execute(
        f"INSERT INTO {EVENT_PAIRS} SELECT DISTINCT coalesce(user_id, ''), "
        "coalesce(anonymous_id, '') FROM _ev_groups"
    )
    drop(wh, "_ev_groups")


def _region(column: str, table: str = "") -> str:
    """SQL: the ``region`` of a sighting taken from ``column`` — the country beside a phone
    (``table``: the alias the group's ``country`` is read through, with its dot)."""
    if column != "phone":
        return "'' AS region"
    return f"coalesce(CAST({table}country AS VARCHAR), '') AS region"


_INPUTS = {
    # prefix: (table, own id column, origin column, time column, evidence, other identifiers)
    # group ids are integers, 4·n + the input's number (events 0, records 1, orders 2, tickets 3)
    "r": (
        "customer_records",
        "record_id",
        "record_id",
        "observed_at",
        "record",
        ("phone", "user_id"),
    ),
    "o": ("orders", "source_customer_id", "order_id", "created_at", "order", ()),
    "t": ("tickets", "source_customer_id", "ticket_id", "created_at", "ticket", ()),
}


_NUMBER = {"r": 1, "o": 2, "t": 3}


def _grouped(wh: Warehouse, prefix: str, where: Where, direct: str | None) -> None:
    """Records, orders, tickets: the source's own id, email, phone … per distinct combination."""
    table, id_column, origin, time, evidence, others = _INPUTS[prefix]
    if prefix == "r":  # sealed records (privacy.encrypted_fields) are read decrypted
        from personify.profiles.records import readable_records

        table, where = readable_records(wh, where)
    extra = "".join(f", {c}" for c in others)
    # the country beside a record's phone: one per group (the smallest, when versions differ)
    country = ", min(country) AS country" if "phone" in others else ", NULL AS country"
    inner = ", country" if "phone" in others else ""
    drop(wh, "_in_groups")
    number, row = _numbered(wh)
    wh.execute(
        f"CREATE TEMP TABLE _in_groups AS SELECT 4 * {number} + {_NUMBER[prefix]} "
        "AS grp, source, sid, email"
        f"{extra}, min(t) AS first_seen, max(t) AS last_seen, min(o) AS origin, "
        f"{_several('sid', 'email', *others)} AS linked{country} FROM ("
        f"SELECT source, {id_column} AS sid, email{extra}{inner}, {time} AS t, "
        f"CAST({origin} AS VARCHAR) AS o{row} FROM {table} WHERE {where[0]}) x "
        f"GROUP BY source, sid, email{extra}",
        where[1],
    )
    columns: list[tuple[str, str | None]] = [("sid", None), ("email", "email")]
    columns += [(c, c) for c in others]
    for column, kind in columns:
        join = source_kind_join("g.source") if kind is None else ""
        kind_sql = source_kind("g.source") if kind is None else f"'{kind}'"
        _add(
            wh,
            f"SELECT g.grp, {kind_sql} AS kind, "
            f"CAST(g.{column} AS VARCHAR) AS raw, g.source, g.first_seen, g.last_seen, "
            f"'{evidence}' AS evidence, g.origin, g.linked, {_region(column, 'g.')} "
            f"FROM _in_groups g {join} "
            f"WHERE g.{column} IS NOT NULL",
            kind,
            direct,
        )
    drop(wh, "_in_groups", "_records_plain")  # (decrypted records, if any: not kept)


def _phones(wh: Warehouse, region: str | None) -> None:
    """Phones not already in E.164 form, parsed once per distinct value and country in Python
    (``region``: the country to read them in when none is written beside them)."""
    phone_map(
        wh,
        f"SELECT DISTINCT raw, region FROM {_RAW.name} WHERE kind = 'phone' "
        f"AND {phone_sql('raw')} IS NULL AND {id_sql('raw')} IS NOT NULL",
        region,
    )


def load_blind_key(wh: Warehouse, blind: Blind) -> None:
    """(Re)create :data:`BLIND_KEY_TABLE` with the HMAC pads of ``blind`` (bound as parameters:
    the key is never in SQL text)."""
    drop(wh, BLIND_KEY_TABLE)
    blob = "BLOB" if wh.dialect == "duckdb" else "BYTEA"
    wh.execute(f"CREATE TEMP TABLE {BLIND_KEY_TABLE} (kind VARCHAR, ik {blob}, ok {blob})")
    for kind in blind.kinds:
        inner, outer = blind.pads(kind)
        wh.execute(f"INSERT INTO {BLIND_KEY_TABLE} VALUES (?, ?, ?)", [kind, inner, outer])


def collect(wh: Warehouse, scope: Scope, config: IdentityConfig) -> int:
    """Fill :data:`SIGHTED` from the inputs in ``scope``; returns how many sightings it holds."""
    temp_table(wh, _RAW)
    drop(wh, EVENT_PAIRS, SIGHTED, "_normalized")
    wh.execute(f"CREATE TEMP TABLE {EVENT_PAIRS} (uid VARCHAR, aid VARCHAR)")
    email = email_sql("s.raw", config.email)
    phone = f"coalesce({phone_sql('s.raw')}, pm.e164)"
    blind = blind_of(wh)
    if blind is not None:  # encrypted email/phone columns: the graph holds keyed hashes
        load_blind_key(wh, blind)
        if "email" in blind.kinds:  # (an order's or ticket's sealed address carries it)
            email = sealed_or_blind_sql(wh.dialect, "email", "s.raw", email)
        phone = blind_sql(wh.dialect, "phone", phone) if "phone" in blind.kinds else phone
    value = (
        f"CASE WHEN s.kind = 'email' THEN {email} WHEN s.kind = 'phone' THEN {phone} "
        f"ELSE {id_sql('s.raw')} END"
    )
    direct = None
    if wh.dialect == "duckdb":
        # normalized where it stands: DuckDB's vectorized string functions cost less than
        # grouping the distinct values and joining them back (100k world: 0.79 vs 1.0 CPU-s);
        # as they are added, but phones (parsed below, once per distinct value)
        direct = f"CASE WHEN s.kind = 'email' THEN {email} ELSE {id_sql('s.raw')} END"
        wh.execute(
            f"CREATE TEMP TABLE {SIGHTED} (grp BIGINT, kind VARCHAR, value VARCHAR, "
            "source VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ, evidence VARCHAR, "
            "origin VARCHAR, linked BOOLEAN)"
        )
    if scope.events != NOTHING:
        _events(wh, scope.events, direct)
    for prefix, where in (("r", scope.records), ("o", scope.orders), ("t", scope.tickets)):
        if where != NOTHING:
            _grouped(wh, prefix, where, direct)
    _phones(wh, config.phone_region)
    if direct is not None:
        wh.execute(
            f"INSERT INTO {SIGHTED} SELECT * FROM (SELECT s.grp, s.kind, {value} AS "
            "value, s.source, s.first_seen, s.last_seen, s.evidence, s.origin, s.linked FROM "
            f"{_RAW.name} s LEFT JOIN {PHONES.name} pm ON s.kind = 'phone' AND pm.raw = s.raw "
            "AND pm.region = s.region) n WHERE value IS NOT NULL"
        )
    else:
        # normalized once per distinct value (an anonymous id is sighted in many groups), then
        # joined
        wh.execute(
            "CREATE TEMP TABLE _normalized AS SELECT * FROM (SELECT s.kind, s.raw, "
            f"{value} AS value, s.region FROM (SELECT DISTINCT kind, raw, region FROM "
            f"{_RAW.name}) s LEFT JOIN {PHONES.name} pm ON s.kind = 'phone' AND pm.raw = s.raw "
            "AND pm.region = s.region) n WHERE value IS NOT NULL"
        )
        wh.execute(
            f"CREATE TEMP TABLE {SIGHTED} AS SELECT s.grp, s.kind, n.value, s.source, "
            f"s.first_seen, s.last_seen, s.evidence, s.origin, s.linked FROM {_RAW.name} s "
            "JOIN _normalized n ON n.kind = s.kind AND n.raw = s.raw AND n.region = s.region"
        )
    drop(wh, _RAW.name, PHONES.name, "_normalized")
    return int(wh.scalar(f"SELECT count(*) FROM {SIGHTED}") or 0)
