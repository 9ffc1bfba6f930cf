"""Real-world dirt and invalid records: the same person twice, mixed formats, broken rows."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from personify.demo import World


def test_the_same_people_in_the_crm_and_the_shop_under_other_ids(world: World) -> None:
    con = duckdb.connect()
    con.register("shop", world.shop_customers)
    con.register("crm", world.crm_contacts)
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE s.email <> c.properties.email) FROM shop s "
        "JOIN crm c ON lower(trim(s.email)) = lower(trim(c.properties.email)) "
        "WHERE s.id <> c.id"
    ).fetchone()
    assert row is not None
    matched, differently_written = row
    assert matched > 0.8 * world.crm_contacts.num_rows
    assert differently_written > 0.2 * matched


def test_emails_are_dirty_in_case_and_spaces(world: World) -> None:
    emails = world.shop_customers.column("email").drop_null()
    spaced = pc.sum(pc.not_equal(emails, pc.utf8_trim_whitespace(emails))).as_py()
    cased = pc.sum(pc.not_equal(emails, pc.utf8_lower(emails))).as_py()
    assert spaced > 0.1 * len(emails) and cased > 0.1 * len(emails)


def test_phones_come_in_mixed_formats(world: World) -> None:
    phones = world.shop_customers.column("phone").drop_null()
    e164 = pc.match_substring_regex(phones, r"^\+\d+$")
    spaced = pc.match_substring_regex(phones, r"^\+\d+ \d")
    national = pc.match_substring_regex(phones, r"^(0|\()")
    prefixed = pc.match_substring_regex(phones, r"^00\d+ ")
    for kind in (e164, spaced, national, prefixed):
        assert pc.sum(kind).as_py() > 0.1 * len(phones)
    assert world.shop_customers.column("phone").null_count > 0


def test_countries_have_iana_time_zones(world: World) -> None:
    from zoneinfo import ZoneInfo

    zones = set(
        world.crm_contacts.column("properties").combine_chunks().field("hs_timezone").to_pylist()
    )
    assert len(zones) > 5
    for zone in zones:
        ZoneInfo(zone)


def test_crm_updates_disagree_with_the_shop(world: World) -> None:
    con = duckdb.connect()
    con.register("u", world.crm_updates)
    con.register("c", world.crm_contacts)
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE u.properties.phone IS DISTINCT FROM "
        "c.properties.phone), "
        "count(*) FILTER (WHERE u.properties.lastname <> c.properties.lastname), "
        "count(*) FILTER (WHERE u.updatedAt > c.updatedAt) FROM u JOIN c USING (id)"
    ).fetchone()
    assert row is not None
    total, phones, names, later = row
    assert total == world.crm_updates.num_rows > 0
    assert phones > 0 and names > 0 and later == total


def test_invalid_records_of_every_kind(world: World) -> None:
    invalid = world.invalid
    for name in ("products", "shop_customers", "crm_contacts", "consents", "orders", "tickets"):
        assert invalid[name] > 0, name
    assert invalid["order_items"] > 0 and invalid["events"] > 0
    items = world.order_items.column("quantity")
    assert pc.sum(pc.less(items, 0)).as_py() > 0  # negative quantity
    ids = world.orders.column("id")
    assert ids.null_count > 0  # missing required id
    emails = world.shop_customers.column("email")
    malformed = pc.invert(
        pc.match_substring_regex(pc.utf8_trim_whitespace(emails), r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    )
    assert pc.sum(malformed).as_py() > 0
    stamps = world.tickets.column("created_at")
    parsed = pc.strptime(stamps, "%Y-%m-%dT%H:%M:%SZ", "s", error_is_null=True)
    assert parsed.null_count > 0  # unparseable timestamps


def test_flawed_events(world: World) -> None:
    flaws = world.events.flaws()
    for kind in ("missing_message_id", "missing_identity", "missing_cart_id", "duplicate"):
        assert flaws[kind] > 0, kind
    table = world.events.to_table()
    assert table.column("messageId").null_count == flaws["missing_message_id"]
    no_identity = pc.and_(
        pc.is_null(table.column("userId")), pc.is_null(table.column("anonymousId"))
    )
    assert pc.sum(no_identity).as_py() == flaws["missing_identity"]
    added = table.filter(pc.equal(table.column("event"), "Product Added"))
    without_cart = pc.invert(pc.match_substring(added.column("properties"), '"cart_id"'))
    assert pc.sum(without_cart).as_py() == flaws["missing_cart_id"]


def test_about_half_a_percent_is_invalid(world: World) -> None:
    sizes = world.sizes()
    total = sum(sizes.values())
    bad = sum(v for k, v in world.invalid.items() if not k.endswith("_duplicate"))
    assert 0.002 < bad / total < 0.01
    assert pa is not None
