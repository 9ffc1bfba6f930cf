"""The first population (an empty graph built in one set-based pass) gives the general pass's
result, row for row, on every backend: the same node ids, clusters, parts, customer ids (the
stable-id rule), refusals (the over-merge guard), identities and stitched customer ids — on a
hand-made world with every kind of input and on random worlds."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personify import clock
from personify.config import IdentityConfig
from personify.identity import graph, resolve_batch
from personify.identity.ids import id_key, set_id_key
from personify.warehouse import Warehouse, connect, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
NOW = datetime(2026, 6, 1, tzinfo=UTC)

_TABLES = {
    "identity_nodes": "node_id",
    "identity_edges": "a, b, source",
    "identity_refusals": "a, b, source",
    "identities": "kind, value",
    "customer_ids": "customer_id",
    "events": "message_id",
    "orders": "order_id",
    "tickets": "ticket_id",
}


@pytest.fixture
def other(warehouse_url: str, tmp_path: Any) -> Iterator[Warehouse]:
    """A second, empty warehouse on the same backend (the general pass builds the world there)."""
    if warehouse_url.startswith("duckdb"):
        wh = connect(f"duckdb:///{tmp_path / 'general.duckdb'}")
        try:
            yield wh
        finally:
            wh.close()
        return
    base, _, schema = warehouse_url.rpartition("schema=")
    second = f"{schema}_g{uuid.uuid4().hex[:4]}"
    wh = connect(f"{base}schema={second}")
    try:
        yield wh
    finally:
        wh.close()
        import psycopg

        with psycopg.connect(base.rstrip("?&"), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{second}" CASCADE')


def _ts(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _events(
    rows: list[tuple[str, str, str | None, str | None, float, str | None, str | None]],
) -> pa.Table:
    """(message_id, type, anonymous_id, user_id, day, email, previous_id)."""
    return pa.table(
        {
            "message_id": [r[0] for r in rows],
            "type": [r[1] for r in rows],
            "anonymous_id": [r[2] for r in rows],
            "user_id": [r[3] for r in rows],
            "previous_id": [r[6] for r in rows],
            "timestamp": pa.array([_ts(r[4]) for r in rows], TS),
            "received_at": pa.array([_ts(r[4]) for r in rows], TS),
            "source": ["web"] * len(rows),
            "traits": [None if r[5] is None else f'{{"email": "{r[5]}"}}' for r in rows],
        }
    )


def _records(rows: list[tuple[str, str, str | None, str | None, str | None, float]]) -> pa.Table:
    """(source, record_id, email, phone, user_id, day)."""
    return pa.table(
        {
            "source": [r[0] for r in rows],
            "record_id": [r[1] for r in rows],
            "email": [r[2] for r in rows],
            "phone": [r[3] for r in rows],
            "user_id": [r[4] for r in rows],
            "observed_at": pa.array([_ts(r[5]) for r in rows], TS),
            "received_at": pa.array([_ts(r[5]) for r in rows], TS),
        }
    )


def _owned(key: str, rows: list[tuple[str, str | None, str | None, str | None, float]]) -> pa.Table:
    """(id, customer_id as loaded, source_customer_id, email, day)."""
    return pa.table(
        {
            key: [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "source_customer_id": [r[2] for r in rows],
            "email": [r[3] for r in rows],
            "status": ["open"] * len(rows),
            "created_at": pa.array([_ts(r[4]) for r in rows], TS),
            "received_at": pa.array([_ts(r[4]) for r in rows], TS),
            "source": ["shop"] * len(rows),
        }
    )


def hand_made() -> dict[str, pa.Table]:
    return {
        "events": _events(
            [
                ("m1", "page", "a1", None, 0, None, None),
                ("m2", "identify", "a1", "u1", 1, " Ann@X.org ", None),
                ("m3", "identify", "dev", "u2", 2, None, None),  # a shared device: two
                ("m4", "identify", "dev", "u3", 3, None, None),  # accounts (user_id: 1)
                ("m5", "identify", "a9", "u9", 4, "test@example.com", None),  # blocked
                ("m6", "identify", "a8", "u8", 4, "test@example.com", None),
                ("m7", "alias", "a7", "u7", 5, None, "a6"),
                ("m8", "page", "a6", None, 0.5, None, None),
                ("m9", "page", "lone", None, 6, None, None),  # anonymous only: no customer
                ("m10", "track", " a1 ", None, 7, None, None),
                ("m11", "page", None, None, 7, None, None),
                ("m12", "identify", "a5", "u5", 8, "bob@y.org", None),
                ("m13", "identify", "a5", "u4", 9, None, None),
            ]
        ),
        "customer_records": _records(
            [
                ("crm", "c1", "ann@x.org", "+33612345678", None, 0),
                ("shop", "s1", "ANN@x.org", None, None, 2),
                ("crm", "c2", "bob@y.org", None, "u4", 3),
                ("crm", "c3", "carl@z.org", "+33612345678", None, 1),
                ("shop", "s2", None, None, None, 1),
            ]
        ),
        "orders": _owned(
            "order_id",
            [
                ("o1", "s1", None, None, 2),  # the shop's id in customer_id: adopted
                ("o2", None, None, "carl@z.org", 3),
                ("o3", None, "s9", "nobody@q.org", 4),
                ("o4", None, None, None, 4),
            ],
        ),
        "tickets": _owned("ticket_id", [("t1", None, None, "bob@y.org", 5)]),
    }


def _load(wh: Warehouse, world: dict[str, pa.Table]) -> None:
    for name, rows in world.items():
        if rows.num_rows:
            wh.load(table(name), rows)


def _snapshot(wh: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    def columns(name: str) -> str:  # (not stored_at: the real clock at each warehouse's load)
        return ", ".join(c.name for c in table(name).columns if c.name != "stored_at")

    return {
        name: wh.fetch(f"SELECT {columns(name)} FROM {name} ORDER BY {key}")
        for name, key in _TABLES.items()
    }


def _both_ways(
    first: Warehouse, general: Warehouse, world: dict[str, pa.Table], config: IdentityConfig
) -> dict[str, int]:
    _load(first, world)
    _load(general, world)
    with clock.frozen(NOW):
        one = resolve_batch(first, config)
        two = resolve_batch(general, config, first_population=False)
    assert one.counts.pop("first_population") == 1
    assert two.counts.pop("first_population") == 0
    assert one.counts == two.counts
    assert one.changed_customers == two.changed_customers
    assert one.components.edges_per_round == two.components.edges_per_round
    got, expected = _snapshot(first), _snapshot(general)
    for name in _TABLES:
        assert got[name] == expected[name], name
    return one.counts


def test_first_population_equals_general_pass(warehouse: Warehouse, other: Warehouse) -> None:
    counts = _both_ways(warehouse, other, hand_made(), IdentityConfig())
    # the world exercises the guard, blocked values and stitching
    assert counts["merges_refused"] >= 1 and counts["clusters_split"] >= 1
    assert counts["customers_new"] >= 5 and counts["events_stitched"] >= 10
    assert warehouse.scalar("SELECT count(*) FROM identity_nodes WHERE blocked") == 1
    # the next pass goes on incrementally from the first population as from the general one
    more = {"customer_records": _records([("shop", "s2", "carl@z.org", None, None, 9)])}
    _load(warehouse, more)
    _load(other, more)
    with clock.frozen(NOW):
        resolve_batch(warehouse, IdentityConfig())
        resolve_batch(other, IdentityConfig())
    assert _snapshot(warehouse) == _snapshot(other)


def test_first_population_limits_and_priority(warehouse: Warehouse, other: Warehouse) -> None:
    config = IdentityConfig(limits={"user_id": 1, "email": 1}, blocked={"*": ("dev",)})
    _both_ways(warehouse, other, hand_made(), config)


_ANON = [f"a{i}" for i in range(8)]
_USERS = [f"u{i}" for i in range(5)]
_EMAILS = [f"e{i}@x.org" for i in range(5)]


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, pa.Table]:
    maybe = st.one_of(st.none(), st.sampled_from(_USERS))
    ev = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["page", "identify", "alias"]),
                st.one_of(st.none(), st.sampled_from(_ANON)),
                maybe,
                st.integers(0, 20),
                st.one_of(st.none(), st.sampled_from([*_EMAILS, "test@example.com"])),
                st.one_of(st.none(), st.sampled_from(_ANON)),
            ),
            max_size=25,
        )
    )
    rec = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["crm", "shop"]),
                st.sampled_from(["r1", "r2", "r3", "r4"]),
                st.one_of(st.none(), st.sampled_from(_EMAILS)),
                maybe,
                st.integers(0, 20),
            ),
            max_size=8,
            unique_by=lambda r: (r[0], r[1], r[4]),
        )
    )
    return {
        "events": _events([(f"m{i}", t, a, u, d, e, p) for i, (t, a, u, d, e, p) in enumerate(ev)]),
        "customer_records": _records([(s, r, e, None, u, d) for s, r, e, u, d in rec]),
    }


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(worlds())
def test_first_population_equals_general_pass_random(
    warehouse_url: str, tmp_path: Any, world: dict[str, pa.Table]
) -> None:
    # fresh warehouses per example (the fixtures are per test)
    name = uuid.uuid4().hex[:8]
    if warehouse_url.startswith("duckdb"):
        urls = [f"duckdb:///{tmp_path / f'{name}-{w}.duckdb'}" for w in ("f", "g")]
    else:
        base, _, schema = warehouse_url.rpartition("schema=")
        urls = [f"{base}schema={schema}_{name}{w}" for w in ("f", "g")]
    first, general = connect(urls[0]), connect(urls[1])
    try:
        _both_ways(first, general, world, IdentityConfig())
    finally:
        first.close()
        general.close()
        if not warehouse_url.startswith("duckdb"):
            import psycopg

            with psycopg.connect(base.rstrip("?&"), autocommit=True) as conn:
                for url in urls:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{url.rpartition("schema=")[2]}" CASCADE')


@pytest.mark.parametrize("first", [True, False], ids=["first-population", "general-pass"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_a_node_keeps_its_first_sightings_source_and_time(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, first: bool, packed: bool
) -> None:
    """An identifier's node holds the source that sighted it first (the smallest source name
    when two sighted it at the same microsecond), that time to the microsecond — before 1970
    too — and its last sighting. ``packed`` off: DuckDB's packed key is refused as out of range
    (it takes the row-keyed aggregate other engines use)."""
    if not packed:
        monkeypatch.setattr(graph, "_RANGE_BITS", 8)
    t1 = datetime(1957, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    t2 = datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    us = timedelta(microseconds=1)
    ts = pa.array([t1, t1, t1 + timedelta(days=2), t2 + us, t2, t2 + timedelta(days=5)], TS)
    records = pa.table(
        {
            "source": ["zeta", "shop", "crm", "crm", "zeta", "shop"],
            "record_id": ["z1", "s1", "c1", "c2", "z2", "s2"],
            "email": ["ann@x.org", "ann@x.org", "ann@x.org", "bob@y.org", "bob@y.org", "bob@y.org"],
            "observed_at": ts,
            "received_at": ts,
        }
    )
    warehouse.load(table("customer_records"), records)
    with clock.frozen(NOW):
        resolve_batch(warehouse, IdentityConfig(), first_population=first)
    nodes = warehouse.fetch(
        "SELECT value, source, first_seen, last_seen FROM identity_nodes WHERE kind = 'email' "
        "ORDER BY value"
    )
    assert [(v, s, f.astimezone(UTC), last.astimezone(UTC)) for v, s, f, last in nodes] == [
        ("ann@x.org", "shop", t1, t1 + timedelta(days=2)),  # zeta and shop at t1: shop
        ("bob@y.org", "zeta", t2, t2 + timedelta(days=5)),  # zeta a microsecond before crm
    ]


def test_a_first_population_over_kept_customer_ids_takes_them_over(warehouse: Warehouse) -> None:
    """A graph emptied by hand while the customer ids stay, then rules that changed: the first
    population runs again over ids already given, and the same founders get the same ids
    (updated in place, not inserted twice), active again."""
    _load(warehouse, hand_made())
    with clock.frozen(NOW):
        resolve_batch(warehouse, IdentityConfig())
    before = warehouse.fetch("SELECT customer_id, founder FROM customer_ids ORDER BY 1")
    identities = warehouse.fetch("SELECT kind, value, customer_id FROM identities ORDER BY 1, 2")
    with warehouse.transaction():
        for name in ("identities", "identity_refusals", "identity_edges", "identity_nodes"):
            warehouse.execute(f"DELETE FROM {name}")
        warehouse.execute("UPDATE customer_ids SET status = 'merged', founded_at = ?", [_ts(-999)])
    with clock.frozen(NOW):  # (the world's phones are E.164: the same graph, other rules)
        again = resolve_batch(warehouse, IdentityConfig(phone_region="FR"))
    assert again.counts["first_population"] == 1
    assert warehouse.fetch("SELECT customer_id, founder FROM customer_ids ORDER BY 1") == before
    assert warehouse.scalar("SELECT count(*) FROM customer_ids WHERE status <> 'active'") == 0
    assert warehouse.scalar("SELECT min(founded_at) FROM customer_ids") > _ts(-999)
    assert (
        warehouse.fetch("SELECT kind, value, customer_id FROM identities ORDER BY 1, 2")
        == identities
    )


def test_new_customer_ids_are_keyed_by_the_signing_key(
    warehouse: Warehouse, other: Warehouse
) -> None:
    """A new customer's id hashes the project's id key with its founder, so an id (masked
    exports show them) cannot be tested against a guessed address; the first population and the
    general pass mint the same keyed ids, and a rebuild keeps them."""
    set_id_key(warehouse, "secret one")
    set_id_key(other, "secret one")
    _both_ways(warehouse, other, hand_made(), IdentityConfig())
    founders = warehouse.fetch(
        "SELECT c.customer_id, n.kind, n.value FROM customer_ids c "
        "JOIN identity_nodes n ON n.node_id = c.founder ORDER BY 1"
    )
    assert len(founders) >= 5
    key = id_key("secret one")
    for customer_id, kind, value in founders:
        assert customer_id == "cus_" + hashlib.md5(f"{key}{kind}:{value}".encode()).hexdigest()[:20]
        assert customer_id != "cus_" + hashlib.md5(f"{kind}:{value}".encode()).hexdigest()[:20]
    # a rebuild from scratch under the same key gives the same ids
    with clock.frozen(NOW):
        again = resolve_batch(warehouse, IdentityConfig(phone_region="FR"))
    assert again.counts["full_rebuild"] == 1
    assert warehouse.fetch("SELECT customer_id FROM customer_ids ORDER BY 1") == [
        (c,) for c, _, _ in founders
    ]


def test_a_national_phone_is_read_in_the_country_written_beside_it(
    warehouse: Warehouse, other: Warehouse
) -> None:
    """A national number is read in the record's (or identify call's) own country when that is
    an ISO code, in any case; a country name, or none, falls back to ``identity.phone_region``:
    the same in the first population and the general pass. The same national digits written
    in two countries are two numbers, not one person."""
    crm = _records(
        [
            ("crm", "c1", "ann@x.org", "06 12 34 56 78", None, 0),  # FR
            ("crm", "c2", "bob@x.org", "0151 1234 5678", None, 0),  # de
            ("crm", "c3", "cat@x.org", "07700 900123", None, 0),  # UK, as people write it
            ("crm", "c4", "dan@x.org", "(202) 555-0143", None, 0),  # a name: the default
            ("crm", "c5", "eve@x.org", "(212) 555-0199", None, 0),  # no country: the default
            ("shop", "s1", "fay@x.org", "06 12 34 56 78", None, 0),  # BE: another number
        ]
    ).append_column("country", pa.array(["FR", "de", " uk ", "United States", None, "BE"]))
    identify = _events([("m1", "identify", "a1", "u1", 1, None, None)]).drop_columns("traits")
    identify = identify.append_column(
        "traits", pa.array(['{"phone": "030 901820", "address": {"country": "DE"}}'])
    )
    world = {"customer_records": crm, "events": identify}
    _both_ways(warehouse, other, world, IdentityConfig(phone_region="US"))
    phones = warehouse.fetch(
        "SELECT i.value, c.value FROM identities i JOIN identities c ON c.customer_id = "
        "i.customer_id AND c.kind IN ('email', 'user_id') WHERE i.kind = 'phone' ORDER BY 2"
    )
    assert phones == [
        ("+33612345678", "ann@x.org"),
        ("+4915112345678", "bob@x.org"),
        ("+447700900123", "cat@x.org"),
        ("+12025550143", "dan@x.org"),
        ("+12125550199", "eve@x.org"),
        ("+32612345678", "fay@x.org"),
        ("+4930901820", "u1"),
    ]
