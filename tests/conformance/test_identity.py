"""Identity resolution on every backend: components equal a union-find oracle, limits, blocked
values, stable ids, incremental equals batch, explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personify.config import IdentityConfig
from personify.identity import explain, resolve_batch
from personify.identity.components import LABELS, connected_components
from personify.warehouse import Warehouse, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def union_find(edges: list[tuple[int, int]]) -> dict[int, int]:
    """The oracle: node → smallest node of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def graphs() -> st.SearchStrategy[list[tuple[int, int]]]:
    random_edges = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=80)
    chain = st.permutations(list(range(100, 160))).map(
        lambda p: [(p[i], p[i + 1]) for i in range(len(p) - 1)]
    )
    star = st.integers(200, 260).map(lambda c: [(c, x) for x in range(200, 261) if x != c])
    return st.tuples(random_edges, st.one_of(st.just([]), chain), st.one_of(st.just([]), star)).map(
        lambda t: t[0] + t[1] + t[2]
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graphs())
def test_components_equal_union_find(warehouse: Warehouse, edges: list[tuple[int, int]]) -> None:
    from personify.warehouse.scratch import scratch, temp_table

    t = scratch("_test_edges", a="BIGINT", b="BIGINT")
    temp_table(
        warehouse,
        t,
        pa.table(
            {
                "a": pa.array([e[0] for e in edges], pa.int64()),
                "b": pa.array([e[1] for e in edges], pa.int64()),
            }
        ),
    )
    report = connected_components(warehouse, "SELECT a, b FROM _test_edges")
    got = dict(warehouse.fetch(f"SELECT node, label FROM {LABELS}"))
    expected = {x: r for x, r in union_find(edges).items() if x != r}
    assert got == expected
    assert report.rounds <= 12


def test_iteration_bound(warehouse: Warehouse) -> None:
    from personify.identity.components import ComponentsDidNotConverge

    with pytest.raises(ComponentsDidNotConverge):
        connected_components(
            warehouse,
            "SELECT a, b FROM (VALUES (5, 4), (4, 3), (3, 6), (6, 1), (1, 7)) v(a, b)",
            max_rounds=1,
        )


def events(rows: list[tuple[str, str | None, str | None, int, str | None]]) -> pa.Table:
    """(message_id, anonymous_id, user_id, day, email in traits)."""
    return pa.table(
        {
            "message_id": [r[0] for r in rows],
            "type": ["identify" if r[4] or r[2] else "page" for r in rows],
            "anonymous_id": [r[1] for r in rows],
            "user_id": [r[2] for r in rows],
            "timestamp": pa.array([T0 + timedelta(days=r[3]) for r in rows], TS),
            "received_at": pa.array([T0 + timedelta(days=r[3]) for r in rows], TS),
            "source": ["web"] * len(rows),
            "traits": [None if r[4] is None else f'{{"email": "{r[4]}"}}' for r in rows],
        }
    )


def records(rows: list[tuple[str, str, str | None, int]]) -> pa.Table:
    """(source, record_id, email, day)."""
    return pa.table(
        {
            "source": [r[0] for r in rows],
            "record_id": [r[1] for r in rows],
            "email": [r[2] for r in rows],
            "observed_at": pa.array([T0 + timedelta(days=r[3]) for r in rows], TS),
            "received_at": pa.array([T0 + timedelta(days=r[3]) for r in rows], TS),
        }
    )


def customer_of(wh: Warehouse, kind: str, value: str) -> str | None:
    return wh.scalar(
        "SELECT customer_id FROM identity_nodes WHERE kind = ? AND value = ?", [kind, value]
    )


def test_stitching_limits_blocked_and_explain(warehouse: Warehouse) -> None:
    warehouse.load(
        table("events"),
        events(
            [
                ("m1", "a1", None, 0, None),
                ("m2", "a1", "u1", 1, " Ann@X.org "),
                ("m3", "dev", "u2", 2, None),
                ("m4", "dev", "u3", 3, None),
                ("m5", "a9", "u9", 4, "test@example.com"),
                ("m6", "a8", "u8", 4, "test@example.com"),
            ]
        ),
    )
    warehouse.load(
        table("customer_records"),
        records([("crm", "c1", "ann@x.org", 0), ("shop", "s1", "ANN@x.org", 2)]),
    )
    resolve_batch(warehouse, IdentityConfig())
    ann = customer_of(warehouse, "user_id", "u1")
    assert ann and ann == customer_of(warehouse, "crm_id", "c1") == customer_of(
        warehouse, "shop_id", "s1"
    )
    assert warehouse.scalar("SELECT customer_id FROM events WHERE message_id = 'm1'") == ann
    # a shared device goes with its first account; the second merge is refused
    assert customer_of(warehouse, "anonymous_id", "dev") == customer_of(warehouse, "user_id", "u2")
    assert customer_of(warehouse, "user_id", "u3") != customer_of(warehouse, "user_id", "u2")
    assert warehouse.scalar("SELECT count(*) FROM identity_refusals") == 1
    # a blocked address merges nobody
    assert customer_of(warehouse, "user_id", "u9") != customer_of(warehouse, "user_id", "u8")
    config = IdentityConfig()
    assert explain(warehouse, "user_id:u1", "shop_id:s1", config).linked
    why = explain(warehouse, "user_id:u2", "user_id:u3", config)
    assert not why.linked and "limit 1" in why.reason
    assert "blocked" in explain(warehouse, "u9", "test@example.com", config).reason


def test_incremental_equals_batch_and_merge_keeps_oldest(warehouse: Warehouse) -> None:
    warehouse.load(
        table("customer_records"),
        records([("crm", "c1", "ann@x.org", 0), ("shop", "s1", "ann2@x.org", 1)]),
    )
    resolve_batch(warehouse, IdentityConfig())
    old = customer_of(warehouse, "crm_id", "c1")
    shop = customer_of(warehouse, "shop_id", "s1")
    assert old != shop
    # a later record links both: one customer, the older id kept, the other marked merged
    warehouse.load(table("customer_records"), records([("crm", "c1", "ann2@x.org", 5)]))
    report = resolve_batch(warehouse, IdentityConfig())
    assert report.counts["customers_merged"] == 1
    assert customer_of(warehouse, "shop_id", "s1") == old
    assert (
        warehouse.scalar("SELECT merged_into FROM customer_ids WHERE customer_id = ?", [shop])
        == old
    )
    # a second run changes nothing
    again = resolve_batch(warehouse, IdentityConfig())
    assert again.counts["identifiers_added"] == 0 and again.counts["customers_new"] == 0
    # rules changed: the graph is rebuilt, ids are kept
    resolve_batch(warehouse, IdentityConfig(limits={"user_id": 2}))
    assert customer_of(warehouse, "shop_id", "s1") == old


def test_a_standing_refusal_keeps_its_time(warehouse: Warehouse) -> None:
    """A pass that touches a split cluster rewrites only what changed: a refusal that still
    stands keeps the time it was decided; a new one is stamped with the pass's time."""
    from personify import clock

    first, later = T0 + timedelta(days=10), T0 + timedelta(days=20)
    warehouse.load(
        table("events"), events([("m1", "dev", "u2", 2, None), ("m2", "dev", "u3", 3, None)])
    )
    with clock.frozen(first):
        assert resolve_batch(warehouse, IdentityConfig()).counts["merges_refused"] == 1
    warehouse.load(table("events"), events([("m3", "dev", "u4", 4, None)]))
    with clock.frozen(later):
        assert resolve_batch(warehouse, IdentityConfig()).counts["merges_refused"] == 2
    rows = warehouse.fetch(
        "SELECT nb.value, r.decided_at FROM identity_refusals r "
        "JOIN identity_nodes nb ON nb.node_id IN (r.a, r.b) AND nb.kind = 'user_id' ORDER BY 1"
    )
    assert [(value, when.astimezone(UTC)) for value, when in rows] == [
        ("u3", first),
        ("u4", later),
    ]
    assert customer_of(warehouse, "anonymous_id", "dev") == customer_of(warehouse, "user_id", "u2")


def test_later_passes_restitch_the_events_earlier_passes_read(warehouse: Warehouse) -> None:
    """Events already stitched follow their identifiers' customer when a later pass changes it:
    an anonymous visitor who logs in, then a merge that retires the customer id they got — and a
    pass of new visitors leaves the stored events alone."""

    def owner(message_id: str) -> str | None:
        return warehouse.scalar("SELECT customer_id FROM events WHERE message_id = ?", [message_id])

    warehouse.load(table("events"), events([("m1", "a1", None, 0, None)]))
    warehouse.load(table("customer_records"), records([("crm", "c1", "ann@x.org", 0)]))
    resolve_batch(warehouse, IdentityConfig())
    assert owner("m1") is None  # anonymous only: no customer yet
    ann = customer_of(warehouse, "crm_id", "c1")
    warehouse.load(table("events"), events([("m2", "a1", "u1", 1, None)]))
    resolve_batch(warehouse, IdentityConfig())
    logged_in = customer_of(warehouse, "user_id", "u1")
    assert logged_in and owner("m1") == owner("m2") == logged_in != ann
    # u1 turns out to be the CRM's Ann (seen first): u1's customer id is merged into Ann's
    warehouse.load(table("events"), events([("m3", "a3", "u1", 2, "ann@x.org")]))
    report = resolve_batch(warehouse, IdentityConfig())
    assert report.counts["customers_merged"] == 1
    assert owner("m1") == owner("m2") == owner("m3") == ann
    warehouse.load(table("events"), events([("m4", "a4", None, 3, None)]))
    assert resolve_batch(warehouse, IdentityConfig()).counts["events_stitched"] == 0
    assert [owner(m) for m in ("m1", "m2", "m3", "m4")] == [ann, ann, ann, None]


def test_an_outside_event_stays_with_its_user_when_its_device_moves(warehouse: Warehouse) -> None:
    """An event belongs to its user id's customer first: when a later pass moves the shared
    device it was sent from to another customer, the event stays with its user."""

    def owner(message_id: str) -> str | None:
        return warehouse.scalar("SELECT customer_id FROM events WHERE message_id = ?", [message_id])

    warehouse.load(table("customer_records"), records([("crm", "c1", "ann@x.org", 0)]))
    warehouse.load(
        table("events"),
        events(
            [
                ("m1", "dev", "u2", 1, None),
                ("m2", "dev", "u3", 2, None),
                ("m0", "z", None, 3, None),  # (the next pass reads from here on)
            ]
        ),
    )
    resolve_batch(warehouse, IdentityConfig())
    u2, u3 = customer_of(warehouse, "user_id", "u2"), customer_of(warehouse, "user_id", "u3")
    assert customer_of(warehouse, "anonymous_id", "dev") == u2 != u3
    assert (owner("m1"), owner("m2")) == (u2, u3)
    # u2 is the CRM's Ann: the device moves with u2 to Ann's (older) customer id
    warehouse.load(table("events"), events([("m3", "a3", "u2", 4, "ann@x.org")]))
    resolve_batch(warehouse, IdentityConfig())
    ann = customer_of(warehouse, "crm_id", "c1")
    assert customer_of(warehouse, "anonymous_id", "dev") == ann != u2
    assert (owner("m1"), owner("m2"), owner("m3")) == (ann, u3, ann)


def test_orders_follow_a_merge_of_their_customer(warehouse: Warehouse) -> None:
    """A later pass that merges an order's customer into an older one moves the order too (the
    orders a pass re-reads are those of the customers it changed), and leaves the others."""

    def orders(rows: list[tuple[str, str, int]]) -> pa.Table:
        return pa.table(
            {
                "order_id": [r[0] for r in rows],
                "email": [r[1] for r in rows],
                "created_at": pa.array([T0 + timedelta(days=r[2]) for r in rows], TS),
                "received_at": pa.array([T0 + timedelta(days=r[2]) for r in rows], TS),
                "source": ["shop"] * len(rows),
            }
        )

    warehouse.load(table("customer_records"), records([("crm", "c1", "ann@x.org", 0)]))
    warehouse.load(table("orders"), orders([("o1", " Ann2@x.org", 1), ("o2", "bob@x.org", 1)]))
    resolve_batch(warehouse, IdentityConfig())
    owner = "SELECT customer_id FROM orders WHERE order_id = ?"
    second, bob = warehouse.scalar(owner, ["o1"]), warehouse.scalar(owner, ["o2"])
    ann = customer_of(warehouse, "crm_id", "c1")
    assert second and bob and len({ann, second, bob}) == 3
    warehouse.load(table("customer_records"), records([("crm", "c1", "ann2@x.org", 5)]))
    assert resolve_batch(warehouse, IdentityConfig()).counts["orders_stitched"] == 1
    assert warehouse.scalar(owner, ["o1"]) == ann
    assert warehouse.scalar(owner, ["o2"]) == bob
