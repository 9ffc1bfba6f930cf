"""The synthetic world: deterministic, to scale, dirty where it should be."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tests.unit.demo.conftest import NOW

from personify.demo import World, build_world


def _same(a: World, b: World) -> None:
    for name, table in a.tables().items():
        assert table.equals(b.tables()[name]), name
    assert a.vip_list.equals(b.vip_list) and a.loyalty.equals(b.loyalty)
    assert a.events.to_table().equals(b.events.to_table())
    assert a.email_events.to_table().equals(b.email_events.to_table())


def test_the_same_seed_gives_the_same_world(world: World) -> None:
    _same(world, build_world(1000, seed=7, now=NOW))


def test_another_seed_or_instant_gives_another_world(world: World) -> None:
    other = build_world(1000, seed=8, now=NOW)
    assert not other.shop_customers.equals(world.shop_customers)
    later = build_world(1000, seed=7, now=NOW + timedelta(days=1))
    assert not later.orders.equals(world.orders)


def test_rendering_does_not_depend_on_the_batch_size(world: World) -> None:
    whole = pa.Table.from_batches(list(world.events.batches(10**9)))
    pieces = pa.Table.from_batches(list(world.events.batches(777)))
    assert whole.equals(pieces)


def test_sizes_scale_with_the_customers(world: World) -> None:
    small, big = world.sizes(), build_world(3000, seed=7, now=NOW).sizes()
    for name in ("shop_customers", "crm_contacts", "consents", "orders", "events"):
        assert 2.4 < big[name] / small[name] < 3.6, name
    assert small["shop_customers"] >= 1000


def test_at_least_ten_events_per_customer(world: World) -> None:
    sizes = world.sizes()
    assert (sizes["events"] + sizes["email_events"]) / world.customers >= 10


def test_every_event_is_shaped_like_a_segment_payload(events: pa.Table) -> None:
    assert {"messageId", "type", "event", "anonymousId", "userId", "timestamp"} <= set(
        events.column_names
    )
    assert {"properties", "context"} <= set(events.column_names)
    types = set(events.column("type").to_pylist())
    assert types == {"page", "identify", "track"}
    names = set(events.column("event").drop_null().to_pylist())
    assert {"Product Viewed", "Product Added", "Checkout Started", "Order Completed"} <= names
    assert events.column("timestamp").type == pa.timestamp("ms", tz="UTC")
    context = events.column("context").combine_chunks()
    assert context.type.get_field_index("ip") >= 0 and context.type.get_field_index("page") >= 0
    campaigns = context.field("campaign").drop_null()
    assert len(campaigns) > 0  # UTM on some landing pages


def test_message_ids_are_unique_but_for_retried_duplicates(world: World) -> None:
    for log in (world.events, world.email_events):
        ids = log.to_table().column("messageId").drop_null()
        duplicates = len(ids) - len(pc.unique(ids))
        assert duplicates == log.flaws()["duplicate"] > 0


def test_anonymous_sessions_identify_later(events: pa.Table) -> None:
    con = duckdb.connect()
    con.register("e", events)
    later = con.execute(
        "SELECT count(*) FROM e i WHERE i.type = 'identify' AND i.userId IS NOT NULL "
        "AND i.traits.email IS NOT NULL AND EXISTS (SELECT 1 FROM e a WHERE a.anonymousId = "
        "i.anonymousId AND a.userId IS NULL AND a.timestamp < i.timestamp)"
    ).fetchone()
    assert later is not None and later[0] > 0


def test_abandoned_carts_some_in_the_last_hours(events: pa.Table) -> None:
    con = duckdb.connect()
    con.register("e", events)
    rows = con.execute(
        "WITH added AS (SELECT json_extract_string(properties, '$.cart_id') AS cart, "
        "max(timestamp) AS last_at, bool_or(userId IS NOT NULL) AS known FROM e "
        "WHERE event = 'Product Added' GROUP BY 1), done AS (SELECT DISTINCT "
        "json_extract_string(properties, '$.cart_id') AS cart FROM e "
        "WHERE event = 'Order Completed') SELECT count(*), "
        "count(*) FILTER (WHERE last_at > $recent AND known) FROM added "
        "WHERE cart IS NOT NULL AND cart NOT IN (SELECT cart FROM done)",
        {"recent": NOW - timedelta(hours=6)},
    ).fetchone()
    assert rows is not None
    abandoned, recent = rows
    assert abandoned > 50 and recent > 0


def test_orders_match_their_order_completed_events(world: World, events: pa.Table) -> None:
    con = duckdb.connect()
    con.register("e", events)
    con.register("o", world.orders)
    con.register("i", world.order_items)
    mismatched = con.execute(
        "SELECT count(*) FROM o JOIN e ON e.event = 'Order Completed' AND "
        "json_extract_string(e.properties, '$.order_id') = o.id WHERE "
        "abs(CAST(json_extract(e.properties, '$.total') AS DOUBLE) - o.total_price) > 0.001 "
        "OR json_array_length(json_extract(e.properties, '$.products')) <> "
        "(SELECT count(*) FROM i WHERE i.order_id = o.id AND i.quantity > 0)"
    ).fetchone()
    assert mismatched == (0,)
    sums = con.execute(
        "SELECT count(*) FROM o WHERE o.id IS NOT NULL AND abs(o.subtotal_price - (SELECT "
        "sum(quantity * price) FROM i WHERE i.order_id = o.id AND i.quantity > 0)) > 0.011"
    ).fetchone()
    assert sums == (0,)


def test_purchase_recency_spreads_for_segments_and_rules(world: World) -> None:
    created = world.orders.column("created_at").drop_null()
    recent = pc.greater(created, pa.scalar(NOW - timedelta(days=30), created.type))
    assert pc.sum(recent).as_py() > 30
    con = duckdb.connect()
    con.register("o", world.orders)
    lapsed = con.execute(
        "SELECT count(*) FROM (SELECT customer_id, max(created_at) AS last FROM o "
        "GROUP BY 1) WHERE last < $cut",
        {"cut": NOW - timedelta(days=60)},
    ).fetchone()
    assert lapsed is not None and lapsed[0] > 30


def test_nothing_happens_after_now(world: World, events: pa.Table) -> None:
    limit = pa.scalar(NOW, pa.timestamp("ms", tz="UTC"))
    assert pc.max(events.column("timestamp")).as_py() < NOW
    assert pc.max(world.orders.column("updated_at")).as_py() <= limit.as_py()
    email = world.email_events.to_table()
    assert pc.max(email.column("timestamp")).as_py() < NOW


def test_consents_granted_revoked_and_missing(world: World) -> None:
    statuses = pc.value_counts(world.consents.column("status")).to_pylist()
    counts = {s["values"]: s["counts"] for s in statuses}
    assert counts["granted"] > 10 * counts["revoked"] / 2 > 0
    assert world.consents.num_rows < world.shop_customers.num_rows  # some never opted in
    purposes = set(world.consents.column("purpose").to_pylist())
    assert purposes == {"email_marketing"}
    assert set(world.consents.column("channel").to_pylist()) == {"email"}


def test_products_have_new_arrivals_and_out_of_stock(world: World) -> None:
    products = world.products.filter(pc.is_valid(world.products.column("id")))
    stock = products.column("inventory_quantity")
    assert pc.sum(pc.equal(stock, 0)).as_py() > 0
    created = pc.strptime(
        products.column("created_at"), "%Y-%m-%dT%H:%M:%SZ", "s", error_is_null=True
    )
    fresh = pc.greater(created, pa.scalar((NOW - timedelta(days=14)).replace(tzinfo=None)))
    assert pc.sum(fresh).as_py() >= 10
    assert len(pc.unique(products.column("product_type"))) == 10


def test_sizes_per_thousand_customers_are_documented(world: World) -> None:
    sizes = world.sizes()
    assert 150 < sizes["products"] < 250
    assert 0.8 < sizes["crm_contacts"] / 1000 < 0.95
    assert 0 < sizes["tickets"] < 400
    assert np.isclose(sizes["shop_customers"], 1000, atol=20)


def test_crm_contacts_carry_their_language(world: World) -> None:
    """HubSpot's ``hs_language``: the locale of the contact's country (fr-FR for France), the
    customers' locale — the French ones get the demo's French emails."""
    props = world.crm_contacts.column("properties").combine_chunks()
    pairs = set(zip(props.field("country").to_pylist(), props.field("hs_language").to_pylist()))
    assert ("FR", "fr-FR") in pairs and ("GB", "en-GB") in pairs
    assert all(lang.endswith("-" + country) for country, lang in pairs if country and lang)
    assert props.field("hs_language").null_count == 0


def test_the_vip_sheet_lists_the_vips_as_a_sheet_holds_them(world: World) -> None:
    """Every vip and champion customer, dirty as typed (case, spaces), then two rows that are
    no address (the upload quarantines them)."""
    from personify.demo.people import CHAMPION, VIP, VIP_LIST_FLAWS, build_people

    now_ms = int(world.now.timestamp()) * 1000
    people = build_people(np.random.default_rng([world.seed, 1]), world.customers, now_ms)
    vips = np.flatnonzero(np.isin(people.cohort[: world.customers], [VIP, CHAMPION]))
    emails = world.vip_list.column("email").to_pylist()
    assert emails[-2:] == list(VIP_LIST_FLAWS)
    assert [e.strip().lower() for e in emails[:-2]] == people.emails(vips).to_pylist()
    assert any(e != e.strip().lower() for e in emails[:-2])  # dirt to normalize
    assert set(world.vip_list.column("tier").to_pylist()) == {"gold", "platinum"}


def test_the_loyalty_table_is_clean_and_tiered_by_points(world: World) -> None:
    loyalty = world.loyalty.to_pylist()
    assert 0.3 * world.customers < len(loyalty) < 0.8 * world.customers
    bounds = {"bronze": (0, 500), "silver": (500, 2000), "gold": (2000, 10**9)}
    for row in loyalty:
        low, high = bounds[row["tier"]]
        assert low <= row["points"] < high
        assert row["email"] == row["email"].strip().lower()
    assert {r["tier"] for r in loyalty} == set(bounds)
